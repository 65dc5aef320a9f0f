"""Rate limits that name no time: the delivery is parked (no worker sleeps), then decided on full evidence.

GitHub documents that a secondary rate limit may come as a 403 or 429 without ``retry-after``: wait at least
a minute (or until ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0), longer while it keeps coming.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from github_app import db
from github_app.db.models import Delivery, Deployment
from scorer.evidence import Availability
from tests.scenarios import LABEL, release_state, stored
from tests.world import World, running_world

CODE_SCANNING = "/repos/acme/api/code-scanning/alerts"
OPEN = {"state": "open"}  # the open alerts' listing, not the recently dismissed one read beside it


def parked(world: World) -> Delivery:
    """Wait until the only delivery is parked by a rate limit, and return it."""

    def waiting() -> Delivery | None:
        rows = world.deliveries()
        return rows[0] if rows and rows[0].state == "pending" and (rows[0].last_error or "").startswith(
            "waiting:") else None

    return world.wait(waiting, what="the delivery to be parked")


def due_now(world: World) -> None:
    """Let the parked delivery's time come, and the deployment's, which waits as long (as if the wait were over)."""
    engine = db.make_engine(world.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(Delivery).values(next_attempt_at=datetime.now(UTC)))
            conn.execute(update(Deployment).where(Deployment.lease_owner.is_(None))
                         .values(lease_until=datetime.now(UTC)))  # fmt: skip
    finally:
        engine.dispose()


def seconds_until(row: Delivery) -> float:
    due = row.next_attempt_at if row.next_attempt_at.tzinfo else row.next_attempt_at.replace(tzinfo=UTC)
    return (due - datetime.now(UTC)).total_seconds()


@pytest.mark.parametrize("kind", ["secondary_rate_limit_no_retry_after", "rate_limit_429_no_retry_after"])
def test_a_rate_limit_without_retry_after_parks_the_delivery_for_a_minute(database_url, kind):
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", CODE_SCANNING, kind, times=1, query=OPEN)
        world.request_gate(LABEL)
        row = parked(world)
        assert 55 <= seconds_until(row) <= 65  # at least a minute, as GitHub asks
        assert row.attempts == 0  # waiting is not a failed attempt
        assert "rate limit" in row.last_error
        assert world.gate(LABEL).answer is None  # nothing decided on partial evidence
        assert not [r for r in world.state.check_runs("acme/api", name="gonogo") if r.status == "completed"]

        due_now(world)
        assert world.wait_decided(LABEL).answer == "approved"
        ev, _, _ = stored(world, LABEL)
        statuses = [c.status for c in world.state.calls("GET", CODE_SCANNING) if c.query.get("state") == "open"]
    assert statuses == [403 if kind.startswith("secondary") else 429, 200]
    assert ev.security.sources["code_scanning"] is Availability.OK  # never "not configured"


def test_a_primary_limit_waits_until_the_reset_time(database_url):
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", CODE_SCANNING, "primary_rate_limit", retry_after=300, times=1, query=OPEN)
        world.request_gate(LABEL)
        row = parked(world)
        assert 280 <= seconds_until(row) <= 305  # x-ratelimit-reset, not a flat minute
        due_now(world)
        assert world.wait_decided(LABEL).answer == "approved"


def test_a_secondary_limit_that_keeps_coming_backs_off_exponentially(database_url):
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", CODE_SCANNING, "secondary_rate_limit_no_retry_after", times=2, query=OPEN)
        world.request_gate(LABEL)
        first = seconds_until(parked(world))
        due_now(world)
        world.wait(lambda: world.deliveries()[0].next_attempt_at.replace(tzinfo=UTC)
                   > datetime.now(UTC) + timedelta(seconds=90), what="the second, longer wait")  # fmt: skip
        second = seconds_until(parked(world))
        assert 55 <= first <= 65 and 115 <= second <= 125
        assert world.deliveries()[0].attempts == 0
        due_now(world)
        assert world.wait_decided(LABEL).answer == "approved"
