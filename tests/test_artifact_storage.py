"""Artifact downloads redirect to another host; the GitHub token must not follow them there."""

from __future__ import annotations

import httpx

from github_app.sandbox import running_sandbox
from github_app.sandbox.storage import STORAGE_HOST
from scorer.evidence import Availability
from tests.scenarios import LABEL, REPO, decide, release_state, stored
from tests.test_change_limits import token_for_state
from tests.world import running_world


def test_the_gate_downloads_artifacts_from_the_storage_host_without_its_token(database_url):
    with running_world(database_url, release_state()) as world:
        assert decide(world, LABEL).answer == "approved"
        ev, _, _ = stored(world, LABEL)
        downloads = world.state.calls("GET", "/_storage/blobs/*")
        leaked = world.state.leaked_tokens
    assert len(downloads) == 2 and {c.status for c in downloads} == {200}  # test-results and coverage
    assert {c.response_headers["authorization-sent"] for c in downloads} == {"no"}
    assert leaked == 0
    assert ev.tests.availability is Availability.OK and ev.tests.total == 150


def test_the_storage_host_refuses_a_request_that_carries_a_token():
    state = release_state()
    [artifact, *_] = state.repo(REPO).artifacts.values()
    with running_sandbox(state) as sandbox:
        token = token_for_state(sandbox.url, state)
        redirect = httpx.get(f"{sandbox.url}/repos/{REPO}/actions/artifacts/{artifact.id}/zip",
                             headers={"Authorization": f"token {token}"})  # fmt: skip
        location = redirect.headers["location"]
        leaked = httpx.get(location, headers={"Authorization": f"token {token}"})
        signed = httpx.get(location)
    assert redirect.status_code == 302 and httpx.URL(location).host == STORAGE_HOST != httpx.URL(sandbox.url).host
    assert leaked.status_code == 403 and b"InvalidAuthenticationInfo" in leaked.content
    assert signed.status_code == 200 and signed.content == artifact.data
    assert state.leaked_tokens == 1


def test_the_storage_host_refuses_a_url_without_its_signature_or_past_its_minute():
    # GitHub's download URL is pre-signed in its query and "expires after 1 minute"
    state = release_state()
    [artifact, *_] = state.repo(REPO).artifacts.values()
    with running_sandbox(state) as sandbox:
        token = token_for_state(sandbox.url, state)
        location = httpx.get(f"{sandbox.url}/repos/{REPO}/actions/artifacts/{artifact.id}/zip",
                             headers={"Authorization": f"token {token}"}).headers["location"]  # fmt: skip
        unsigned = httpx.get(location.partition("?")[0])
        tampered = httpx.get(location.replace("sig=", "sig=A"))
        state.advance(61)
        expired = httpx.get(location)
    assert "sig=" in httpx.URL(location).query.decode()
    for refused in (unsigned, tampered, expired):
        assert refused.status_code == 403 and b"AuthenticationFailed" in refused.content
