"""Contract: the sandbox's app-webhook routes answer as GitHub's OpenAPI description says, and githubkit parses them.

Same method as tests/test_sandbox_contract.py: each case drives a route through a real githubkit
client over HTTP, then every logged call's response is validated against the operation's schema.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from githubkit import GitHub

from github_app.commands.setup import build_manifest
from github_app.sandbox.app_hooks import HOOK_ROUTES, configure_hook, deliver
from github_app.sandbox.app_manifest import MANIFEST_ROUTES, WEB_ROUTES
from github_app.sandbox.webhooks import deployment_protection_rule_payload
from github_app.serving import free_port
from tests.test_sandbox_contract import (
    SPEC_PATH,
    Spec,
    World,
    app_client,
    expect_error,
    installation_client,
    parsed,
    spec,  # noqa: F401 - the fixture
    world,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"GitHub's OpenAPI description is missing at {SPEC_PATH}")

Case = Callable[[World, GitHub[Any]], Awaitable[None]]
CASES: dict[tuple[str, str], Case] = {}
INTERNAL = {"/_sandbox/calls"}


def case(method: str, path: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[(method, path)] = fn
        return fn
    return register


def _failed_delivery(w: World) -> int:
    if w.state.hook.url is None:
        configure_hook(w.state, f"http://127.0.0.1:{free_port()}/webhooks/github", "contract-secret")
    payload = deployment_protection_rule_payload(w.state, "all-green")
    return deliver(w.state, "deployment_protection_rule", payload, guid=str(uuid.uuid4())).id


@case("GET", "/app/hook/config")
async def _config(w: World, app: GitHub[Any]) -> None:
    _failed_delivery(w)
    data = parsed(await app.rest.apps.async_get_webhook_config_for_app())
    assert data.url == w.state.hook.url and data.secret == "********" and data.content_type == "json"


@case("GET", "/app/hook/deliveries")
async def _list(w: World, app: GitHub[Any]) -> None:
    newest = [_failed_delivery(w), _failed_delivery(w)][-1]
    response = await app.rest.apps.async_list_webhook_deliveries(per_page=1)
    [item] = parsed(response)
    assert item.id == newest and item.status_code == 0 and not item.redelivery
    cursor = response.raw_response.links["next"]["url"].split("cursor=")[1]
    [older] = parsed(await app.rest.apps.async_list_webhook_deliveries(per_page=1, cursor=cursor))
    assert older.id < newest
    await expect_error(app.rest.apps.async_list_webhook_deliveries(per_page=101), 422)


@case("GET", "/app/hook/deliveries/{delivery_id}")
async def _get(w: World, app: GitHub[Any]) -> None:
    delivery_id = _failed_delivery(w)
    data = parsed(await app.rest.apps.async_get_webhook_delivery(delivery_id))
    assert data.id == delivery_id and data.event == "deployment_protection_rule" and data.action == "requested"


@case("POST", "/app/hook/deliveries/{delivery_id}/attempts")
async def _attempt(w: World, app: GitHub[Any]) -> None:
    delivery_id = _failed_delivery(w)
    original = w.state.hook.find(delivery_id)
    assert original is not None
    parsed(await app.rest.apps.async_redeliver_webhook_delivery(delivery_id))
    deadline = time.monotonic() + 10
    while not [d for d in w.state.hook.deliveries if d.redelivery and d.guid == original.guid]:
        assert time.monotonic() < deadline, "the sandbox never re-sent the delivery"
        await asyncio.sleep(0.05)
    [again] = [d for d in w.state.hook.deliveries if d.redelivery and d.guid == original.guid]
    assert again.body == original.body and again.id != original.id
    await expect_error(app.rest.apps.async_redeliver_webhook_delivery(999_999_999), 404)


@case("POST", "/app-manifests/{code}/conversions")
async def _conversion(w: World, app: GitHub[Any]) -> None:
    import httpx

    manifest = build_manifest("https://gonogo.example.com/webhooks/github", "https://localhost/cb", "gonogo-contract")
    async with httpx.AsyncClient(base_url=w.url) as browser:  # the web pages a person clicks through
        page = await browser.post("/settings/apps/new", data={"manifest": json.dumps(manifest)})
        fields = dict(re.findall(r"name='([^']+)' value='([^']*)'", page.text))
        fields = {k: html.unescape(v) for k, v in fields.items()}
        back = await browser.post("/settings/apps/new/confirm", data=fields)
    code = back.headers["location"].split("code=")[1].split("&")[0]
    previous = w.state.app
    try:
        async with GitHub(base_url=w.url + "/") as anonymous:
            data = parsed(await anonymous.rest.apps.async_create_from_manifest(code))
            assert data.name == "gonogo-contract" and data.pem.startswith("-----BEGIN") and data.webhook_secret
            await expect_error(anonymous.rest.apps.async_create_from_manifest(code), 404)  # one time only
    finally:
        assert previous is not None and previous.private_key_pem is not None
        w.state.set_app(previous.id, previous.public_key_pem, slug=previous.slug, name=previous.name,
                        owner=previous.owner, private_key_pem=previous.private_key_pem)  # fmt: skip


ROUTE_IDS = [(method, path) for method, path, *_ in [*HOOK_ROUTES, *MANIFEST_ROUTES]
             if path not in INTERNAL and path not in WEB_ROUTES]


def test_every_hook_route_has_a_case() -> None:
    assert sorted(CASES) == sorted(ROUTE_IDS)


@pytest.mark.parametrize(("method", "path"), ROUTE_IDS, ids=[f"{m} {p}" for m, p in ROUTE_IDS])
def test_hook_route_matches_openapi_and_githubkit(world: World, spec: Spec, method: str, path: str) -> None:  # noqa: F811
    before = len(world.state.calls())
    assert installation_client(world) is not None
    asyncio.run(CASES[(method, path)](world, app_client(world)))
    web = ("/_sandbox/", "/settings/", "/organizations/")  # the sandbox's web pages are not REST operations
    calls = [c for c in world.state.calls()[before:] if not c.path.startswith(web)]
    assert any(c.method == method for c in calls), "the case did not call its own route"
    problems: list[str] = []
    for call in calls:
        template, operation = spec.operation(call.method, call.path)
        responses = operation["responses"]
        if str(call.status) in responses:
            content = spec.resolve(responses[str(call.status)]).get("content", {})
            schema = content.get("application/json", {}).get("schema")
        else:
            assert call.status >= 400, f"{call.method} {template} -> {call.status} is not in GitHub's description"
            schema = {"$ref": "#/components/schemas/basic-error"}
        if schema is not None:
            problems += [f"{call.method} {template} -> {call.status}: {e}"
                         for e in spec.errors(schema, call.response, write=False)]
    assert not problems, "\n".join(problems[:40])
