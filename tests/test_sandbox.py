"""Behaviour of the GitHub sandbox: app JWTs, tokens, faults, pagination, review limits, scenarios, webhooks."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed, SecondaryRateLimitExceeded
from githubkit.webhooks import parse_obj, verify

from github_app.sandbox import (
    SandboxState,
    async_running_sandbox,
    generate_key_pair,
    make_app_jwt,
    running_sandbox,
)
from github_app.sandbox import webhooks as hooks
from github_app.sandbox.scenario import ScenarioError
from github_app.sandbox.state import Repo

DEMO = Path(__file__).resolve().parents[1] / "github_app" / "sandbox" / "scenarios" / "demo.yml"
KEY, PUBLIC = generate_key_pair()
OTHER_KEY, _ = generate_key_pair()
APP_ID = 777


def small_state() -> SandboxState:
    state = SandboxState()
    state.set_app(APP_ID, PUBLIC)
    state.add_installation(42, "acme")
    state.add_repo("acme/shop")
    state.add_repo("globex/billing")
    state.add_commit("globex/billing", message="init", branch="main")
    state.add_commit("acme/shop", sha="a" * 40, message="init", branch="main", author="alice")
    state.add_commit("acme/shop", sha="b" * 40, message="next", branch="main", author="bob",
                     files=[{"filename": "app.py", "additions": 5, "deletions": 1}])
    return state


@pytest.fixture()
def sandbox() -> Iterator[tuple[SandboxState, str]]:
    state = small_state()
    with running_sandbox(state) as running:
        yield state, running.url


def token_for(url: str, state: SandboxState, installation: int = 42) -> str:
    jwt = make_app_jwt(KEY, APP_ID, now=state.now())
    response = httpx.post(f"{url}/app/installations/{installation}/access_tokens",
                          headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def client(url: str) -> GitHub[Any]:
    # githubkit's default token cache is process-wide: a token from another test's sandbox would leak in.
    return GitHub(AppInstallationAuthStrategy(APP_ID, KEY, 42), base_url=url + "/", auto_retry=False,
                  cache_strategy=MemCacheStrategy())


def get(url: str, path: str, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.get(url + path, headers=headers, params=params)


# --------------------------------------------------------------------------- app JWT and tokens

def test_valid_jwt_issues_an_expiring_token(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    jwt = make_app_jwt(KEY, APP_ID, now=state.now())
    response = httpx.post(f"{url}/app/installations/42/access_tokens", headers={"Authorization": f"Bearer {jwt}"})
    body = response.json()
    assert response.status_code == 201
    assert body["token"].startswith("ghs_") and body["expires_at"].endswith("Z")
    assert body["repository_selection"] == "all" and body["permissions"]["checks"] == "write"


@pytest.mark.parametrize(("jwt_kind", "message"), [
    ("wrong_key", "could not be decoded"),
    ("expired", "'Expiration time' claim ('exp')"),
    ("too_long", "too far in the future"),
    ("wrong_issuer", "Integration not found"),
    ("garbage", "could not be decoded"),
])
def test_bad_app_jwt_is_401(sandbox: tuple[SandboxState, str], jwt_kind: str, message: str) -> None:
    state, url = sandbox
    now = state.now()
    jwt = {
        "wrong_key": make_app_jwt(OTHER_KEY, APP_ID, now=now),
        "expired": make_app_jwt(KEY, APP_ID, now=now - 3600),
        "too_long": make_app_jwt(KEY, APP_ID, now=now, lifetime=3600),
        "wrong_issuer": make_app_jwt(KEY, APP_ID + 1, now=now),
        "garbage": "not.a.jwt",
    }[jwt_kind]
    response = httpx.post(f"{url}/app/installations/42/access_tokens", headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 401
    assert message in response.json()["message"]


def test_unknown_installation_is_404(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    jwt = make_app_jwt(KEY, APP_ID, now=state.now())
    response = httpx.post(f"{url}/app/installations/999/access_tokens", headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 404


def test_token_is_required_and_expires(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    assert get(url, "/repos/acme/shop", token).status_code == 200
    assert httpx.get(url + "/repos/acme/shop", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    missing = get(url, "/repos/acme/shop", None)
    assert missing.status_code == 401 and missing.json()["message"] == "Requires authentication"
    assert get(url, "/repos/acme/shop", "ghs_unknown").json()["message"] == "Bad credentials"
    state.advance(state.token_ttl + 1)
    expired = get(url, "/repos/acme/shop", token)
    assert expired.status_code == 401 and expired.json()["message"] == "Bad credentials"


def test_token_reaches_only_its_installation(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    assert get(url, "/repos/globex/billing", token).status_code == 404


def test_githubkit_fetches_a_new_token_after_expiry(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    state.token_ttl = 90  # githubkit caches a token until a minute before it expires

    async def twice() -> None:
        gh = client(url)
        await gh.rest.repos.async_get("acme", "shop")
        await gh.rest.repos.async_get("acme", "shop")

    asyncio.run(twice())
    assert len(state.calls("POST", "/app/installations/*/access_tokens")) == 1
    assert [c.installation_id for c in state.calls("GET", "/repos/acme/shop")] == [42, 42]


# --------------------------------------------------------------------------- faults and the call log

def test_two_server_errors_then_success(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.inject("GET", "/repos/*/*/commits/*/check-runs", "status", times=2, status=502)
    path = f"/repos/acme/shop/commits/{'b' * 40}/check-runs"
    statuses = [get(url, path, token).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert [c.fault for c in state.calls("GET", "check-runs")] == ["status", "status", None]


def test_secondary_rate_limit_is_recognised_by_githubkit(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    state.inject("GET", "/repos/acme/shop", "secondary_rate_limit", retry_after=2)

    async def call() -> None:
        gh = client(url)
        await gh.rest.repos.async_get("acme", "shop")

    with pytest.raises(SecondaryRateLimitExceeded) as info:
        asyncio.run(call())
    assert info.value.retry_after.total_seconds() == 2
    assert info.value.response.status_code == 403


def test_429_and_primary_rate_limit_headers(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.inject("GET", "/repos/acme/shop", "rate_limit_429", retry_after=3)
    state.inject("GET", "/repos/acme/shop", "primary_rate_limit", retry_after=30)
    too_many = get(url, "/repos/acme/shop", token)
    assert too_many.status_code == 429 and too_many.headers["retry-after"] == "3"
    primary = get(url, "/repos/acme/shop", token)
    assert primary.status_code == 403 and primary.headers["x-ratelimit-remaining"] == "0"
    assert int(primary.headers["x-ratelimit-reset"]) >= int(state.now())
    assert get(url, "/repos/acme/shop", token).status_code == 200


def test_latency_fault_and_global_latency_delay_calls(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.inject("GET", "/repos/acme/shop", "latency", seconds=0.3)
    assert get(url, "/repos/acme/shop", token).status_code == 200
    state.latency = 0.2
    assert get(url, "/repos/acme/shop", token).status_code == 200
    first, second = state.calls("GET", "/repos/acme/shop")
    assert first.duration >= 0.3 and first.fault == "latency"
    assert second.duration >= 0.2 and second.fault is None


def test_truncated_body_cannot_be_parsed(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.inject("GET", "/repos/acme/shop", "truncate")
    response = get(url, "/repos/acme/shop", token)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_dropped_connection_gets_no_response(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.inject("*", "/repos/acme/*", "drop", times=None)
    with pytest.raises(httpx.RemoteProtocolError):
        get(url, "/repos/acme/shop", token)
    state.clear_faults()
    assert get(url, "/repos/acme/shop", token).status_code == 200
    assert [c.status for c in state.calls("GET", "/repos/acme/shop")] == [0, 200]


def test_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        SandboxState().inject("GET", "/x", "explode")


def test_call_log_records_writes_with_their_body(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    httpx.post(url + "/repos/acme/shop/check-runs", headers={"Authorization": f"token {token}"},
               json={"name": "gonogo", "head_sha": "b" * 40})
    [call] = state.calls("POST", "/repos/*/*/check-runs")
    assert call.body == {"name": "gonogo", "head_sha": "b" * 40} and call.status == 201
    assert call.installation_id == 42 and call.response is None  # bodies kept only with record_responses


# --------------------------------------------------------------------------- check runs and pagination

def test_check_runs_paginate_with_link_headers(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    for index in range(5):
        state.add_check_run("acme/shop", "b" * 40, f"job-{index}")
    path = f"/repos/acme/shop/commits/{'b' * 40}/check-runs"
    pages = [get(url, path, token, per_page=2, page=n) for n in (1, 2, 3)]
    assert [len(p.json()["check_runs"]) for p in pages] == [2, 2, 1]
    assert all(p.json()["total_count"] == 5 for p in pages)
    assert 'rel="next"' in pages[0].headers["link"] and "page=3" in pages[0].headers["link"]
    assert 'rel="prev"' in pages[2].headers["link"] and 'rel="next"' not in pages[2].headers["link"]
    names = [r["name"] for p in pages for r in p.json()["check_runs"]]
    assert sorted(names) == [f"job-{i}" for i in range(5)]


def test_latest_filter_keeps_the_newest_run_per_name(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.add_check_run("acme/shop", "b" * 40, "tests", conclusion="failure")
    state.add_check_run("acme/shop", "b" * 40, "tests", conclusion="success")  # a re-run
    path = f"/repos/acme/shop/commits/{'b' * 40}/check-runs"
    latest = get(url, path, token).json()
    every = get(url, path, token, filter="all").json()
    assert [r["conclusion"] for r in latest["check_runs"]] == ["success"] and every["total_count"] == 2


@pytest.mark.parametrize(("body", "status"), [
    ({"name": "gonogo", "head_sha": "c" * 40}, 422),
    ({"name": "gonogo", "head_sha": "b" * 40, "status": "completed"}, 422),
    ({"name": "gonogo", "head_sha": "b" * 40, "actions": [
        {"label": "x", "description": "y", "identifier": str(i)} for i in range(4)]}, 422),
    ({"name": "gonogo", "head_sha": "b" * 40, "actions": [
        {"label": "A label over twenty chars", "description": "y", "identifier": "a"}]}, 422),
    ({"name": "gonogo", "head_sha": "b" * 40, "output": {"title": "t"}}, 422),
    ({"name": "gonogo", "head_sha": "b" * 40, "status": "completed", "conclusion": "success"}, 201),
])
def test_check_run_validation(sandbox: tuple[SandboxState, str], body: dict[str, Any], status: int) -> None:
    state, url = sandbox
    token = token_for(url, state)
    response = httpx.post(url + "/repos/acme/shop/check-runs", headers={"Authorization": f"token {token}"},
                          json=body)
    assert response.status_code == status, response.text


def test_only_the_creating_app_may_update_a_check_run(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    seeded = state.add_check_run("acme/shop", "b" * 40, "tests")  # created by GitHub Actions
    response = httpx.patch(f"{url}/repos/acme/shop/check-runs/{seeded.id}",
                           headers={"Authorization": f"token {token}"}, json={"conclusion": "failure"})
    assert response.status_code == 403 and seeded.conclusion == "success"


# --------------------------------------------------------------------------- protection-rule review

def review(url: str, token: str, run_id: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/repos/acme/shop/actions/runs/{run_id}/deployment_protection_rule",
                      headers={"Authorization": f"token {token}"}, json=body)


def test_review_limits_and_single_answer(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    dep = state.add_deployment("acme/shop", "b" * 40, "production")
    assert dep.run_id is not None
    run = dep.run_id
    assert review(url, token, run, {"environment_name": "production", "comment": "x" * 1025}).status_code == 422
    assert review(url, token, run, {"environment_name": "production"}).status_code == 422  # report without comment
    assert review(url, token, run, {"environment_name": "staging", "comment": "hi"}).status_code == 422
    for n in range(10):
        assert review(url, token, run, {"environment_name": "production", "comment": f"report {n}"}).status_code == 204
    eleventh = review(url, token, run, {"environment_name": "production", "comment": "one too many"})
    assert eleventh.status_code == 422 and "at most 10" in eleventh.json()["errors"][0]["message"]
    assert review(url, token, run, {"environment_name": "production", "state": "rejected",
                                    "comment": "tests failed"}).status_code == 204
    second = review(url, token, run, {"environment_name": "production", "state": "approved", "comment": "oops"})
    assert second.status_code == 422 and "already been rejected" in second.json()["errors"][0]["message"]
    gate = state.gate("acme/shop", run, "production")
    assert gate.answer == "rejected" and len(gate.reports) == 10
    answers = [r for r in state.reviews("acme/shop") if r.state and r.accepted]
    assert [(a.state, a.comment) for a in answers] == [("rejected", "tests failed")]
    # Refusals on a known gate are recorded (the unknown "staging" gate has nowhere to record them).
    assert sum(not r.accepted for r in state.reviews()) == 4


def test_a_rerun_opens_a_new_attempt(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    dep = state.add_deployment("acme/shop", "b" * 40, "production")
    assert dep.run_id is not None
    assert review(url, token, dep.run_id, {"environment_name": "production", "state": "approved"}).status_code == 204
    state.rerun("acme/shop", dep.run_id)
    assert review(url, token, dep.run_id, {"environment_name": "production", "state": "approved"}).status_code == 204
    assert [(r.run_attempt, r.state) for r in state.reviews() if r.accepted] == [(1, "approved"), (2, "approved")]


def test_team_membership_follows_the_state(sandbox: tuple[SandboxState, str]) -> None:
    state, url = sandbox
    token = token_for(url, state)
    state.add_team_member("acme", "release", "rita")
    path = "/orgs/acme/teams/release/memberships/rita"
    assert get(url, path, token).json()["state"] == "active"
    state.remove_team_member("acme", "release", "rita")
    assert get(url, path, token).status_code == 404


# --------------------------------------------------------------------------- scenarios

def test_demo_scenario_seeds_every_source() -> None:
    state = SandboxState.from_scenario(DEMO)
    assert set(state.named_deployments) == {"all-green", "failing-tests", "checks-running", "unknown-installation"}
    shop: Repo = state.repo("acme/shop")
    failing = shop.workflow_runs[7002]
    archives = {shop.artifacts[i].name: zipfile.ZipFile(io.BytesIO(shop.artifacts[i].data)).namelist()
                for i in failing.artifact_ids}
    assert archives == {"test-results": ["junit-integration.xml", "junit-unit.xml"],
                        "coverage": ["coverage.xml"], "sarif": ["results.sarif"]}
    _, ghost = state.deployment("unknown-installation")
    assert ghost.webhook_installation_id == 999 and 999 not in state.installations
    assert state.app is not None and state.app.private_key_pem is not None  # generated at load time
    _, dep = state.deployment("failing-tests")
    assert shop.commits[dep.sha].parents == [shop.branches["main"]] or dep.ref == "discount-before-tax"


def test_demo_policy_file_is_a_valid_policy() -> None:
    from rules.policy import load_policy_text

    policy_text = SandboxState.from_scenario(DEMO).repo("acme/shop").files["main"][".github/gonogo.yml"].decode()
    policy = load_policy_text(policy_text)
    assert "production" in policy.environments


def test_scenario_from_dict_with_inline_artifact_and_explicit_key() -> None:
    state = SandboxState.from_scenario({
        "app": {"id": 5, "public_key": PUBLIC},
        "installations": [{"id": 1, "account": "octo"}],
        "repos": [{"name": "octo/app", "commits": [{"id": "one"}, {"id": "two"}],
                   "workflow_runs": [{"id": 9, "sha": "two", "artifacts": [
                       {"name": "junit", "files": {"report.xml": "<testsuite tests='0'/>"}}]}],
                   "code_scanning": "disabled"}],
    })
    repo = state.repo("octo/app")
    assert state.app is not None and state.app.private_key_pem is None
    assert repo.code_scanning == "disabled" and len(repo.commits) == 2
    [art] = repo.artifacts.values()
    assert zipfile.ZipFile(io.BytesIO(art.data)).read("report.xml") == b"<testsuite tests='0'/>"


def test_scenario_with_a_missing_artifact_names_it(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"repos": [{"name": "o/r", "commits": [{"id": "c"}], "workflow_runs": [
        {"id": 1, "sha": "c", "artifacts": [{"name": "junit", "path": "nowhere"}]}]}]}))
    with pytest.raises(ScenarioError, match="artifact 'junit'.*does not exist"):
        SandboxState.from_scenario(scenario)


# --------------------------------------------------------------------------- webhooks

def test_send_webhook_signs_the_exact_body() -> None:
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        response = hooks.send_webhook("http://app.test", "s3cret", "ping", {"zen": "Keep it simple."},
                                      delivery_id="d-1", client=client)
    [request] = seen
    assert response.status_code == 202 and str(request.url) == "http://app.test/webhooks/github"
    assert request.headers["x-github-event"] == "ping" and request.headers["x-github-delivery"] == "d-1"
    assert request.headers["user-agent"].startswith("GitHub-Hookshot/")
    assert verify("s3cret", request.content, request.headers["x-hub-signature-256"])
    assert not verify("other", request.content, request.headers["x-hub-signature-256"])


def test_payload_builders_agree_with_state_and_githubkit() -> None:
    state = SandboxState.from_scenario(DEMO)
    with running_sandbox(state) as running:
        rule = hooks.deployment_protection_rule_payload(state, "failing-tests")
        _, dep = state.deployment("failing-tests")
        assert rule["deployment_callback_url"] == (
            f"{running.url}/repos/acme/shop/actions/runs/{dep.run_id}/deployment_protection_rule")
        assert [p["number"] for p in rule["pull_requests"]] == [12] and rule["installation"]["id"] == 4242
        assert hooks.deployment_protection_rule_payload(state, "unknown-installation")["installation"]["id"] == 999
        check = state.check_runs("acme/shop", name="tests")[0]
        state.add_deployment_status("acme/shop", dep.id, "success")
        payloads = {
            "deployment_protection_rule": rule,
            "check_run": hooks.check_run_payload(state, "acme/shop", check.id, "requested_action",
                                                 identifier="approve", sender="rita"),
            "deployment_status": hooks.deployment_status_payload(state, "failing-tests"),
            "workflow_run": hooks.workflow_run_payload(state, "acme/shop", 7002),
            "issue_comment": hooks.issue_comment_payload(state, "acme/shop", 12, "/gonogo approve fine", "rita"),
        }
    for event, payload in payloads.items():
        model = parse_obj(event, payload)  # type: ignore[call-overload]
        assert model.repository is not None and model.repository.full_name == "acme/shop"
    assert payloads["check_run"]["requested_action"] == {"identifier": "approve"}
    assert [c.body for c in state.comments("acme/shop", 12)] == ["/gonogo approve fine"]


def test_async_running_sandbox_serves_in_the_current_loop() -> None:
    async def scenario() -> int:
        state = small_state()
        async with async_running_sandbox(state) as running:
            gh = client(running.url)
            try:
                await gh.rest.repos.async_get("globex", "billing")
            except RequestFailed as exc:
                return exc.response.status_code
        return 0

    assert asyncio.run(scenario()) == 404


def test_gonogo_sandbox_command_serves_and_summarises(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    key = tmp_path / "app.pem"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", "from github_app.cli import main; main()", "sandbox",
                             "--scenario", str(DEMO), "--write-key", str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("GitHub sandbox on http://127.0.0.1:"), first
        url = first.split()[3]
        for _ in range(3):
            proc.stdout.readline()
        assert httpx.get(url + "/repos/acme/shop").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    assert "1 calls served" in output and "GET /repos/acme/shop" in output
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(("permissions", "status"), [
    ({"issues": "write", "pull_requests": "read"}, 201),
    ({"issues": "read", "pull_requests": "write"}, 201),
    ({"issues": "read", "pull_requests": "read"}, 403),
    ({}, 403),
])
def test_a_comment_needs_issues_or_pull_requests_write(permissions: dict[str, str], status: int) -> None:
    state = small_state()
    state.installations[42].permissions = {"metadata": "read", **permissions}
    state.add_pull_request("acme/shop", 7, head_sha="b" * 40)
    with running_sandbox(state) as running:
        token = token_for(running.url, state)
        response = httpx.post(running.url + "/repos/acme/shop/issues/7/comments", json={"body": "hello"},
                              headers={"Authorization": f"token {token}"})
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["message"] == "Resource not accessible by integration"
    else:
        assert [c.body for c in state.repo("acme/shop").comments.values()] == ["hello"]
