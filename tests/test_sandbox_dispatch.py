"""The sandbox's own route dispatch answers exactly as Starlette's router did: same status, headers and body.

The reference is the sandbox's routes mounted the way they used to be (a Starlette app with one Route per
method and path, 404/405 mapped to GitHub's 404), behind the same fault-and-log layer, over the same state.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from github_app.sandbox import SandboxState, create_sandbox_app, generate_key_pair, make_app_jwt
from github_app.sandbox.app import NOT_FOUND, ROUTES, ApiError, Endpoint, FastJSONResponse, endpoint
from github_app.sandbox.faults import FaultAndLogLayer
from github_app.sandbox.state import IssuedToken

KEY, PUBLIC = generate_key_pair()
APP_ID = 555
TOKEN = "ghs_" + "d" * 36
SHA_A, SHA_B = "a" * 40, "b" * 40
ISO_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # times follow the clock, which may tick between the two


def seeded() -> SandboxState:
    state = SandboxState()
    state.set_app(APP_ID, PUBLIC)
    state.add_installation(42, "acme")
    state.add_repo("acme/shop")
    state.add_commit("acme/shop", sha=SHA_A, message="init", branch="main", author="alice")
    state.add_commit("acme/shop", sha=SHA_B, message="next", branch="main", author="bob",
                     files=[{"filename": "app.py", "additions": 5, "deletions": 1}])
    for name in ("build", "tests", "lint"):
        state.add_check_run("acme/shop", SHA_B, name)
    state.add_status("acme/shop", SHA_B, "ci/legacy", "success")
    run = state.add_workflow_run("acme/shop", SHA_B)
    state.add_artifact("acme/shop", run.id, "test-results", b"PK\x05\x06" + b"\0" * 18)
    broken = state.add_workflow_run("acme/shop", SHA_B, name="Broken")
    broken.artifact_ids.append(999_999)  # an artifact that does not exist: the handler fails with KeyError
    state.set_file("acme/shop", "main", ".github/gonogo.yml", "version: 1\n")
    state.set_file("acme/shop", "main", "docs/a b.md", "# spaced\n")
    state.add_pull_request("acme/shop", 7, head_sha=SHA_B)
    state.tokens[TOKEN] = IssuedToken(token=TOKEN, installation_id=42, expires_at=state.now() + 3600,
                                      permissions={}, repositories=None)
    return state


def starlette_reference(state: SandboxState) -> FaultAndLogLayer:
    """Mount the routes on Starlette's router, as the sandbox did before it dispatched on its own."""

    def mounted(run: Endpoint) -> Any:
        async def call(request: Request) -> Response:
            return run(request, await request.body())

        return call

    async def not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, NOT_FOUND).response()

    grouped: dict[str, dict[str, Endpoint]] = {}
    for method, path, handler, auth, with_repo in ROUTES:
        grouped.setdefault(path, {})[method] = endpoint(handler, auth=auth, with_repo=with_repo)
    routes = [Route(path, mounted(run), methods=[method])
              for path, by_method in grouped.items() for method, run in by_method.items()]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.sandbox_state = state  # type: ignore[attr-defined]
    return FaultAndLogLayer(app, state)


def jwt_header(state: SandboxState) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_app_jwt(KEY, APP_ID, now=state.now())}"}


AUTH = {"Authorization": f"token {TOKEN}"}
R = "/repos/acme/shop"
CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", R, AUTH, None),
    ("HEAD", R, AUTH, None),
    ("GET", "/repos/ACME/Shop", AUTH, None),
    ("GET", R + "/", AUTH, None),  # trailing slash: 307 to the route without it
    ("GET", R + "/commits/?per_page=1", AUTH, None),
    ("GET", "/app/", {}, None),
    ("GET", "/", AUTH, None),
    ("GET", "/nope", AUTH, None),
    ("GET", R + "/nope/", AUTH, None),
    ("DELETE", R, AUTH, None),  # known path, unknown method: GitHub's 404, not 405
    ("PUT", "/app", AUTH, None),
    ("GET", R + "/commits?per_page=1&page=2", AUTH, None),
    ("GET", R + "/commits?per_page=1&per_page=2&author=", AUTH, None),
    ("GET", R + f"/commits/{SHA_B}/check-runs?filter=all&per_page=2", AUTH, None),
    ("GET", R + f"/commits/{SHA_B}/check-runs?check_name=tests", AUTH, None),
    ("GET", R + f"/commits/{SHA_B}/status", AUTH, None),
    ("GET", R + f"/commits/{SHA_B}", AUTH, None),
    ("GET", R + f"/commits/{SHA_B[:7]}/pulls", AUTH, None),
    ("GET", R + f"/compare/{SHA_A}...{SHA_B}", AUTH, None),
    ("GET", R + f"/compare/{SHA_A}..{SHA_B}", AUTH, None),
    ("GET", R + "/contents/.github/gonogo.yml?ref=main", AUTH, None),
    ("GET", R + "/contents/.github", AUTH, None),
    ("GET", R + "/contents/docs/a%20b.md", AUTH, None),
    ("GET", R + "/actions/runs?head_sha=" + SHA_B, AUTH, None),
    ("GET", R + "/actions/runs/1/artifacts", AUTH, None),
    ("GET", R + "/issues/comments/comments", AUTH, None),  # the issue-comments-list route, number "comments"
    ("PATCH", R + "/issues/comments/comments", AUTH, b'{"body": "x"}'),  # the comment route, id "comments"
    ("GET", R + "/pulls/7", {**AUTH, "Host": "api.example.test:8443"}, None),  # URLs follow the Host header
    ("GET", R + "/pulls/7", {**AUTH, "Host": "other.example.test"}, None),
    ("GET", R + "/code-scanning/alerts?state=open&per_page=100", AUTH, None),
    ("GET", R + "/collaborators/nobody/permission", AUTH, None),
    ("GET", "/orgs/acme/teams/ops/memberships/alice", AUTH, None),
    ("GET", R, {}, None),  # no credentials
    ("GET", R, {"Authorization": "token ghs_unknown"}, None),
    ("GET", R, {"Authorization": "Basic abc"}, None),
    ("POST", R + "/check-runs", AUTH, b"{not json"),
    ("POST", R + "/check-runs", AUTH, b'{"name": "x"}'),
    ("POST", R + f"/statuses/{SHA_B}", AUTH, b'{"state": "nope"}'),
    ("POST", R + "/actions/runs/1/deployment_protection_rule", AUTH, b'{"environment_name": ""}'),
    ("GET", "/app", {"Authorization": "Bearer not-a-jwt"}, None),
    ("GET", "/_sandbox/blobs/no-such-key/x.zip", {}, None),
]


def ask(app: Any, method: str, path: str, headers: dict[str, str], body: bytes | None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test:5000") as client:
            return await client.request(method, path, headers=headers, content=body)

    return asyncio.run(go())


def same_answer(state: SandboxState, ours: httpx.Response, theirs: httpx.Response) -> None:
    assert ours.status_code == theirs.status_code
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ISO_TIME.sub(b"T", ours.content) == ISO_TIME.sub(b"T", theirs.content)
    ours_call, theirs_call = state.calls()[-1], state.calls()[-2]
    assert (ours_call.status, ours_call.installation_id, ours_call.query, ours_call.body) == \
        (theirs_call.status, theirs_call.installation_id, theirs_call.query, theirs_call.body)


@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES, ids=[f"{m} {p}" for m, p, *_ in CASES])
def test_dispatch_answers_as_starlettes_router(method: str, path: str, headers: dict[str, str],
                                               body: bytes | None) -> None:
    state = seeded()
    reference, ours = starlette_reference(state), create_sandbox_app(state)
    theirs = ask(reference, method, path, headers, body)
    same_answer(state, ask(ours, method, path, headers, body), theirs)
    assert theirs.status_code != 0


def test_app_routes_and_artifact_download_match_the_reference() -> None:
    state = seeded()
    reference, ours = starlette_reference(state), create_sandbox_app(state)
    for path in ("/app", "/app/installations/42", R + "/installation"):
        same_answer(state, ask(ours, "GET", path, jwt_header(state), None),
                    ask(reference, "GET", path, jwt_header(state), None))
    art = next(iter(state.repo("acme/shop").artifacts.values()))
    redirect = ask(ours, "GET", f"{R}/actions/artifacts/{art.id}/zip", AUTH, None)
    same_answer(state, redirect, ask(reference, "GET", f"{R}/actions/artifacts/{art.id}/zip", AUTH, None))
    assert redirect.status_code == 302
    blob = httpx.URL(redirect.headers["location"]).raw_path.decode()  # with its query: the URL is signed
    assert "sig=" in blob
    download = ask(ours, "GET", blob, {}, None)
    same_answer(state, download, ask(reference, "GET", blob, {}, None))
    assert download.content == art.data


def test_unexpected_error_is_a_plain_500_and_is_logged() -> None:
    state = seeded()
    broken = next(r for r in state.repo("acme/shop").workflow_runs.values() if r.name == "Broken")
    path = f"{R}/actions/runs/{broken.id}/artifacts"
    reference, ours = starlette_reference(state), create_sandbox_app(state)
    theirs = ask(reference, "GET", path, AUTH, None)
    mine = ask(ours, "GET", path, AUTH, None)
    same_answer(state, mine, theirs)
    assert (mine.status_code, mine.text) == (500, "Internal Server Error")
    assert state.calls()[-1].status == 500


def test_unmatched_trailing_slash_redirects_with_query_kept() -> None:
    state = seeded()
    response = ask(create_sandbox_app(state), "GET", R + "/commits/?per_page=1", AUTH, None)
    assert response.status_code == 307
    assert response.headers["location"] == "http://sandbox.test:5000/repos/acme/shop/commits?per_page=1"


@pytest.mark.parametrize("path", [R, R + "/commits", R + f"/commits/{SHA_B}", R + f"/compare/{SHA_A}...{SHA_B}",
                                  R + f"/commits/{SHA_B}/check-runs", R + "/actions/runs", R + "/pulls/7",
                                  R + f"/commits/{SHA_B}/status", "/repos/acme/shop/nope"])
def test_orjson_bodies_are_the_bytes_json_dumps_made(path: str) -> None:
    state = seeded()
    body = json.loads(ask(create_sandbox_app(state), "GET", path, AUTH, None).content)
    assert FastJSONResponse(body).body == JSONResponse(body).body


def test_bodies_orjson_cannot_encode_alike_fall_back_to_json() -> None:
    for body in ({1: "int key"}, {"big": 2**70}, {"nested": [{"k": True, None: 1.5}]}):
        assert FastJSONResponse(body).body == JSONResponse(body).body
