"""Missed webhooks are recovered: gonogo asks GitHub (the sandbox) to redeliver failed deliveries it never stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from github_app import db
from github_app.app import create_app
from github_app.background import Background
from github_app.features import default_router
from github_app.github import GitHubClients
from github_app.redelivery import MAX_ATTEMPTS_PER_EVENT, take_lease
from github_app.routing import Context
from github_app.sandbox import SandboxState, running_sandbox
from github_app.sandbox.app_hooks import configure_hook, deliver
from github_app.sandbox.hook_log import HookDelivery
from github_app.sandbox.webhooks import deployment_protection_rule_payload
from github_app.serving import ServerThread, free_port
from github_app.settings import Secret
from tests.helpers import SECRET, make_settings
from tests.world import DEMO_SCENARIO, World


@contextmanager
def world_after_outage(database_url: str, before_start: Any, **settings: Any) -> Iterator[World]:
    """The sandbox delivers to a port nobody listens on (gonogo is down), then gonogo starts on that port."""
    state = SandboxState.from_scenario(DEMO_SCENARIO)
    assert state.app is not None and state.app.private_key_pem
    port = free_port()
    with running_sandbox(state) as sandbox:
        configure_hook(state, f"http://127.0.0.1:{port}/webhooks/github", SECRET)
        before_start(state)
        opts: dict[str, Any] = {"app_id": str(state.app.id), "private_key": Secret(state.app.private_key_pem),
                                "github_api_url": sandbox.url, "workers": 2, "redelivery_seconds": 300.0}
        opts.update(settings)
        settings_obj = make_settings(database_url, **opts)
        with ServerThread(create_app(settings_obj), port=port) as server:
            yield World(state=state, api_url=sandbox.url, app_url=server.url, database_url=database_url,
                        settings=settings_obj)


def _seed(state: SandboxState, guid: str, status_code: int, *, redelivery: bool = False, age: float = 60.0) -> None:
    with state.lock:
        state.hook.deliveries.append(HookDelivery(
            id=state.next_id(), guid=guid, event="deployment_protection_rule", action="requested",
            installation_id=4242, repository_id=1, body=b'{"action":"requested"}', delivered_at=state.now() - age,
            status_code=status_code, status="OK" if status_code == 200 else f"Invalid HTTP Response: {status_code}",
            redelivery=redelivery,
        ))  # fmt: skip


def test_a_protection_rule_missed_while_down_is_redelivered_and_decided_at_start_up(database_url):
    seeded: dict[str, str] = {}

    def outage(state: SandboxState) -> None:
        missed = deliver(state, "deployment_protection_rule", deployment_protection_rule_payload(state, "all-green"))
        assert missed.status_code == 0 and missed.status == "failed to connect to host"
        seeded["missed"] = missed.guid
        seeded["recovered"] = str(uuid.uuid4())  # failed once, then delivered by a redelivery: nothing to do
        _seed(state, seeded["recovered"], 502, age=120)
        _seed(state, seeded["recovered"], 200, redelivery=True)
        seeded["hopeless"] = str(uuid.uuid4())  # failed every time: left for a person
        for _ in range(MAX_ATTEMPTS_PER_EVENT):
            _seed(state, seeded["hopeless"], 500)
        seeded["old"] = str(uuid.uuid4())  # beyond GitHub's 3 days: cannot be redelivered
        _seed(state, seeded["old"], 500, age=4 * 86400)

    with world_after_outage(database_url, outage) as world:
        assert world.wait_decided("all-green", timeout=60).answer == "approved"
        stored = [d.delivery_id for d in world.deliveries()]
        assert stored == [seeded["missed"]]  # redelivered with its GUID, so a second redelivery would be a duplicate
        attempts = [d for d in world.state.hook.deliveries if d.guid == seeded["missed"]]
        assert [(d.redelivery, d.status_code) for d in attempts] == [(False, 0), (True, 202)]
        requested = world.state.calls("POST", "/app/hook/deliveries/*/attempts")
        assert [c.path for c in requested] == [f"/app/hook/deliveries/{attempts[0].id}/attempts"]
        listed = world.state.calls("GET", "/app/hook/deliveries")
        assert listed and all(c.status == 200 for c in listed)

        metrics = httpx.get(f"{world.app_url}/metrics").json()
        assert metrics["redelivery"]["requested"] == 1 and metrics["redelivery"]["passes"] == 1
        scraped = httpx.get(f"{world.app_url}/metrics?format=prometheus").text
        assert 'gonogo_redelivery_total{what="requested"} 1' in scraped.splitlines()


def test_a_failed_delivery_whose_guid_gonogo_stored_is_not_redelivered(database_url):
    guid = str(uuid.uuid4())
    with world_after_outage(database_url, lambda state: None, redelivery_seconds=0.3) as world:
        world.send("deployment_protection_rule", deployment_protection_rule_payload(world.state, "all-green"), guid)
        world.wait(lambda: [d for d in world.deliveries() if d.delivery_id == guid], what="the delivery stored")
        _seed(world.state, guid, 504)  # GitHub gave up waiting for the answer, but gonogo had stored it
        seen = len(world.state.calls("GET", "/app/hook/deliveries"))
        world.wait(lambda: len(world.state.calls("GET", "/app/hook/deliveries")) >= seen + 2, what="two more passes")
        assert not world.state.calls("POST", "/app/hook/deliveries/*/attempts")


def test_listing_follows_the_cursor_to_older_pages(database_url):
    def outage(state: SandboxState) -> None:
        deliver(state, "deployment_protection_rule", deployment_protection_rule_payload(state, "all-green"))
        for _ in range(130):  # newer, delivered events push the failed one to the second page
            _seed(state, str(uuid.uuid4()), 200, age=0)

    with world_after_outage(database_url, outage) as world:
        assert world.wait_decided("all-green", timeout=60).answer == "approved"
        cursors = [c.query.get("cursor") for c in world.state.calls("GET", "/app/hook/deliveries")]
        assert cursors[0] is None and cursors[1] and cursors[1].startswith("v1_")


def test_one_process_at_a_time_holds_the_redelivery_lease(database_url):
    engine = db.make_engine(database_url)
    try:
        hold = timedelta(seconds=60)
        assert take_lease(engine, "a", hold)
        assert not take_lease(engine, "b", hold)
        assert take_lease(engine, "a", hold)  # the holder renews
        later = db_now() + timedelta(seconds=61)
        assert take_lease(engine, "b", hold, now=later)  # expired: another process takes over
        assert not take_lease(engine, "a", hold, now=later)
    finally:
        engine.dispose()


def db_now() -> Any:
    from github_app.inbox import utcnow

    return utcnow()


def test_shutdown_does_not_wait_for_a_slow_listing(database_url):
    state = SandboxState.from_scenario(DEMO_SCENARIO)
    assert state.app is not None and state.app.private_key_pem
    slow: Any = None

    async def run(url: str) -> float:
        settings = make_settings(database_url, app_id=str(state.app.id), github_api_url=url,  # type: ignore[union-attr]
                                 private_key=Secret(state.app.private_key_pem), redelivery_seconds=300.0)  # type: ignore[union-attr]
        engine = db.make_engine(database_url)
        clients = GitHubClients(settings)
        try:
            background = Background(Context(settings, engine, {"github": clients}), default_router(), 0)
            background.start()
            for _ in range(200):  # until the pass is waiting on GitHub's slow answer
                if slow.fired:
                    break
                await asyncio.sleep(0.05)
            assert slow.fired
            started = time.monotonic()
            await background.stop()
            return time.monotonic() - started
        finally:
            await clients.aclose()
            engine.dispose()

    with running_sandbox(state) as sandbox:
        slow = state.inject("GET", "/app/hook/deliveries", "latency", seconds=20.0, times=None)
        assert asyncio.run(run(sandbox.url)) < 3.0


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_turns_redelivery_off(value: str) -> None:
    from github_app.settings import Settings

    settings = Settings.from_env({"GONOGO_WEBHOOK_SECRET": "s", "GONOGO_REDELIVERY_SECONDS": value},
                                 require_github=False)  # fmt: skip
    assert settings.redelivery_seconds == (0.0 if value else 300.0)
