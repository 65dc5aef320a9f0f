"""The REST API version is pinned: every request names it, and the sandbox refuses versions GitHub does not serve."""

from __future__ import annotations

import httpx
from githubkit.versions import LATEST_VERSION

from github_app.github import API_VERSION, check_api_version
from github_app.sandbox import SandboxState, running_sandbox
from tests.scenarios import LABEL, decide, release_state
from tests.world import running_world


def test_every_request_of_a_gate_names_the_pinned_api_version(database_url):
    with running_world(database_url, release_state()) as world:
        assert decide(world, LABEL).answer == "approved"
        calls = [c for c in world.state.calls() if not c.path.startswith(("/_sandbox/", "/_storage/"))]
    assert {c.path for c in calls if c.path.endswith("/access_tokens")}  # the token request is among them
    assert {c.api_version for c in calls} == {API_VERSION}


def test_the_installed_githubkit_models_the_pinned_version():
    assert LATEST_VERSION == API_VERSION
    check_api_version()  # what the app runs at start-up


def test_the_sandbox_refuses_a_version_github_does_not_serve():
    with running_sandbox(SandboxState()) as sandbox:
        refused = httpx.get(f"{sandbox.url}/app", headers={"X-GitHub-Api-Version": "2021-01-01"})
        defaulted = httpx.get(f"{sandbox.url}/app")  # no header: GitHub's default version, then 401 (no JWT)
    assert refused.status_code == 400 and "2021-01-01" in refused.json()["message"]
    assert defaulted.status_code == 401
    assert [c.api_version for c in sandbox.state.calls()] == ["2021-01-01", None]
