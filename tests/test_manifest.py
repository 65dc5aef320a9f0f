"""app.yml against the live app: least privilege drift is reported, and the file itself is sound."""

from __future__ import annotations

import asyncio

from github_app.github import GitHubClients
from github_app.manifest import check_live_app, compare, expected
from github_app.sandbox import running_sandbox
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.scenarios import release_state


def test_app_yml_asks_for_what_the_features_use():
    perms, events = expected()
    assert {"deployment_protection_rule", "check_run", "deployment_status", "issue_comment"} <= events
    assert perms["checks"] == "write" and perms["contents"] == "read" and perms["actions"] == "read"
    assert "administration" not in perms and perms.get("contents") != "write"


def test_compare_names_missing_and_extra_permissions():
    problems = compare({"checks": "write", "contents": "read"}, {"check_run"},
                       {"checks": "read", "administration": "write"}, set())  # fmt: skip
    assert any("checks" in p and "needs write" in p for p in problems)
    assert any("contents" in p and "none" in p for p in problems)
    assert any("administration" in p and "least privilege" in p for p in problems)
    assert any("event check_run" in p for p in problems)


def test_live_app_check_against_the_sandbox(tmp_path):
    state = release_state()
    with running_sandbox(state) as sandbox:
        settings = make_settings(f"sqlite:///{tmp_path}/x.db", app_id=str(state.app.id),
                                 private_key=Secret(state.app.private_key_pem), github_api_url=sandbox.url)  # fmt: skip
        async def check() -> list[str]:
            clients = GitHubClients(settings)
            try:
                return await check_live_app(clients)
            finally:
                await clients.aclose()

        problems = asyncio.run(check())
    assert isinstance(problems, list)
    assert all(isinstance(p, str) and ("permission" in p or "event" in p) for p in problems)
    assert any(c.path == "/app" for c in state.calls("GET"))


def test_app_yml_asks_to_write_only_what_gonogo_writes():
    # gonogo comments on pull requests through the issues API (every pull request is an issue), which
    # issues: write allows; from pull requests themselves it only reads which ones hold a commit and their files
    perms, _ = expected()
    writes = {name for name, level in perms.items() if level == "write"}
    assert writes == {"checks", "deployments", "issues"}
    assert perms["pull_requests"] == "read"


def test_compare_names_a_permission_held_above_what_app_yml_asks():
    # an app created before app.yml lowered pull_requests to read still holds write: least privilege drifted
    problems = compare({"pull_requests": "read", "checks": "write"}, set(), {"pull_requests": "write", "checks": "write"},
                       set())  # fmt: skip
    assert problems == ["permission pull_requests: the app holds write, app.yml asks only read (least privilege)"]
