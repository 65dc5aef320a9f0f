"""Workers: retries with backoff, dead letters, manual retry, lease expiry."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select, update

from github_app import db, inbox, jobs
from github_app.cli import cli
from github_app.db.models import Delivery
from github_app.inbox import IncomingDelivery
from github_app.routing import Context, Event, PermanentError, RetryLater, Router
from github_app.worker import WorkerPool
from tests.helpers import make_settings


def _store(url: str, *ids: str, event: str = "ping") -> None:
    engine = db.make_engine(url)
    try:
        inbox.insert_deliveries(engine, [IncomingDelivery(i, event, None, None, '{"zen": "z"}', False) for i in ids])
    finally:
        engine.dispose()


def _row(url: str, delivery_id: str) -> Delivery:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Delivery).where(Delivery.delivery_id == delivery_id)).one()
    finally:
        engine.dispose()


def _pool(url: str, router: Router, **overrides) -> WorkerPool:
    settings = make_settings(url, **overrides)
    return WorkerPool(Context(settings, db.make_engine(url)), router, 1)


async def _drain(pool: WorkerPool, until: float) -> None:
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        if not await pool.step():
            await asyncio.sleep(0.02)


def test_failing_handler_is_retried_with_backoff_then_dead_then_retried_by_cli(database_url, monkeypatch):
    calls: list[float] = []
    router = Router()

    @router.on("ping")
    async def flaky(ctx: Context, ev: Event) -> None:
        calls.append(time.monotonic())
        if len(calls) <= 4:
            raise RuntimeError(f"GitHub said no (call {len(calls)})")

    _store(database_url, "will-die")
    pool = _pool(database_url, router, max_attempts=3, retry_base_seconds=0.2, retry_max_seconds=1.0)
    asyncio.run(_drain(pool, 3.0))
    row = _row(database_url, "will-die")
    assert len(calls) == 3 and row.state == "dead" and row.attempts == 3
    assert "RuntimeError: GitHub said no (call 3)" in row.last_error
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(g >= 0.0 for g in gaps) and max(gaps) <= 2.5  # jittered exponential waits, capped

    monkeypatch.setenv("GONOGO_DATABASE_URL", database_url)
    monkeypatch.setenv("GONOGO_WEBHOOK_SECRET", "s")
    listed = CliRunner().invoke(cli, ["deliveries", "list", "--state", "dead"])
    assert listed.exit_code == 0 and "will-die" in listed.output and "GitHub said no" in listed.output
    shown = CliRunner().invoke(cli, ["deliveries", "show", "will-die"])
    assert shown.exit_code == 0, shown.output
    assert "delivery will-die" in shown.stdout and "state dead after 3 attempt(s)" in shown.stdout
    assert "RuntimeError: GitHub said no (call 3)" in shown.stdout and '"zen": "z"' in shown.stdout
    assert '"zen"' not in CliRunner().invoke(cli, ["deliveries", "show", "will-die", "--no-payload"]).stdout
    unknown = CliRunner().invoke(cli, ["deliveries", "show", "nope"])
    assert unknown.exit_code == 1 and "No delivery 'nope' found" in unknown.output
    result = CliRunner().invoke(cli, ["deliveries", "retry", "will-die"])
    assert result.exit_code == 0, result.output
    assert _row(database_url, "will-die").state == "pending"
    asyncio.run(_drain(pool, 3.0))  # fourth call fails, fifth succeeds
    row = _row(database_url, "will-die")
    assert row.state == "done" and row.completed_count == 1 and len(calls) == 5
    missing = CliRunner().invoke(cli, ["deliveries", "retry", "no-such-delivery"])
    assert missing.exit_code != 0 and "gonogo deliveries list" in missing.output
    pool.ctx.engine.dispose()


def test_backoff_grows_exponentially_with_jitter():
    waits = [[jobs.retry_delay(n, base=1.0, maximum=1000.0) for n in range(1, 8)] for _ in range(200)]
    means = [sum(col) / len(col) for col in zip(*waits)]
    assert all(b > a for a, b in itertools.pairwise(means))  # grows with the attempt number
    assert len({w[3] for w in waits}) > 100  # jittered
    assert max(jobs.retry_delay(30, base=1.0, maximum=5.0) for _ in range(50)) <= 5.0


def test_permanent_error_goes_straight_to_dead(database_url):
    router = Router()

    @router.on("ping")
    async def broken(ctx: Context, ev: Event) -> None:
        raise PermanentError("unknown installation 42: check the app is installed")

    _store(database_url, "perm")
    pool = _pool(database_url, router, max_attempts=5)
    asyncio.run(_drain(pool, 0.5))
    row = _row(database_url, "perm")
    assert row.state == "dead" and row.attempts == 1 and "check the app is installed" in row.last_error
    pool.ctx.engine.dispose()


def test_expired_lease_makes_a_delivery_claimable_again(database_url):
    engine = db.make_engine(database_url)
    _store(database_url, "leased")
    [job] = inbox.claim(engine, "crashed-worker", lease_seconds=60)
    assert inbox.claim(engine, "other", lease_seconds=60) == []  # held
    with engine.begin() as conn:  # time passes: the lease runs out
        conn.execute(update(Delivery).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
    [again] = inbox.claim(engine, "other", lease_seconds=60)
    assert again.delivery_id == "leased" and again.attempts == 2
    assert inbox.complete(engine, job) is False  # the crashed worker's late completion doesn't count
    assert inbox.complete(engine, again) is True
    row = _row(database_url, "leased")
    assert row.state == "done" and row.completed_count == 1
    engine.dispose()


def test_worker_pool_runs_in_the_background_and_stops(database_url):
    seen: list[str] = []
    router = Router()

    @router.on("ping")
    async def record(ctx: Context, ev: Event) -> None:
        seen.append(ev.delivery_id)

    async def scenario() -> None:
        pool = _pool(database_url, router)
        pool.start()
        await asyncio.to_thread(_store, database_url, "a", "b", "c")
        pool.wake()
        for _ in range(200):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.02)
        await pool.stop()
        pool.ctx.engine.dispose()

    asyncio.run(scenario())
    assert sorted(seen) == ["a", "b", "c"]


def test_the_intake_hands_new_deliveries_to_idle_workers_already_leased(database_url):
    seen: list[tuple[str, int]] = []
    leases: list[tuple[str, timedelta]] = []
    router = Router()

    @router.on("ping")
    async def handle(ctx: Context, ev: Event) -> None:
        seen.append((ev.delivery_id, ev.attempt))
        row = _row(database_url, ev.delivery_id)
        # leased in the very statement that stored it: a claim would lease from its own, later clock
        leases.append((row.state, row.lease_until - row.received_at))

    async def scenario() -> None:
        settings = make_settings(database_url, poll_seconds=3600, lease_seconds=90)
        pool = WorkerPool(Context(settings, db.make_engine(database_url)), router, 3)
        writer = inbox.InboxWriter(pool.ctx.engine)
        writer.start()
        pool.start()
        writer.taker = pool
        writer.on_stored.append(pool.wake)  # as the app wires it
        try:
            async with asyncio.timeout(10):  # the workers' first look finds nothing; then they rest
                while pool.idle < pool.count:
                    await asyncio.sleep(0.02)
            new = await asyncio.gather(*(
                writer.submit(IncomingDelivery(f"h{i}", "ping", None, None, '{"zen": "z"}', False)) for i in range(3)
            ))  # fmt: skip
            ignored = await writer.submit(IncomingDelivery("s1", "star", None, None, "{}", True))
            async with asyncio.timeout(10):
                while pool.processed < 3:
                    await asyncio.sleep(0.02)
            again = await writer.submit(IncomingDelivery("h0", "ping", None, None, '{"zen": "z"}', False))
            await asyncio.sleep(0.3)
        finally:
            await pool.stop()
            await writer.stop()
            pool.ctx.engine.dispose()
        assert new == [True, True, True] and again is False and ignored is True

    asyncio.run(scenario())
    assert sorted(seen) == [("h0", 1), ("h1", 1), ("h2", 1)]  # each once, as its first attempt
    assert leases == [("processing", timedelta(seconds=90))] * 3
    for delivery_id in ("h0", "h1", "h2"):
        row = _row(database_url, delivery_id)
        assert (row.state, row.attempts, row.completed_count, row.lease_owner) == ("done", 1, 1, None)
    assert _row(database_url, "s1").state == "ignored"


def test_a_delivery_stored_leased_is_reclaimable_when_its_lease_expires(database_url):
    engine = db.make_engine(database_url)
    try:
        item = IncomingDelivery("leased", "ping", None, None, '{"zen": "z"}', False)
        ids = inbox.store_deliveries(engine, [item], {"leased": "gone-process:abc"}, lease_seconds=0.2)
        assert list(ids) == ["leased"]
        row = _row(database_url, "leased")
        assert (row.state, row.attempts, row.lease_owner) == ("processing", 1, "gone-process:abc")
        assert inbox.claim(engine, "other", 60) == []  # its owner may still be working on it
        time.sleep(0.3)
        [job] = inbox.claim(engine, "other", 60)  # the owner died: the lease ran out
        assert (job.delivery_id, job.attempts, job.id) == ("leased", 2, ids["leased"])
        assert inbox.complete(engine, job)
    finally:
        engine.dispose()


def test_retry_later_parks_the_delivery_without_spending_an_attempt(database_url):
    calls: list[int] = []
    router = Router()

    @router.on("ping")
    async def waits_then_works(ctx: Context, ev: Event) -> None:
        calls.append(ev.attempt)
        if len(calls) <= 5:
            raise RetryLater("another worker holds the deployment", after=0.05)

    _store(database_url, "patient")
    pool = _pool(database_url, router, max_attempts=2, retry_base_seconds=0.05, retry_max_seconds=0.1)

    async def drain_until_done() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _row(database_url, "patient").state != "done":
            if not await pool.step():
                await asyncio.sleep(0.02)

    try:
        asyncio.run(drain_until_done())
    finally:
        pool.ctx.engine.dispose()
    row = _row(database_url, "patient")
    # six runs with max_attempts=2: waiting never counted as a failed attempt, so it never went dead
    assert len(calls) == 6 and row.state == "done"
    assert calls == [1] * 6 and row.attempts == 1


def test_retry_later_waits_for_its_due_time(database_url):
    router = Router()

    @router.on("ping")
    async def rate_limited(ctx: Context, ev: Event) -> None:
        raise RetryLater("secondary rate limit", after=120)

    _store(database_url, "parked")
    pool = _pool(database_url, router)
    try:
        asyncio.run(_drain(pool, 0.5))
    finally:
        pool.ctx.engine.dispose()
    row = _row(database_url, "parked")
    assert row.state == "pending" and row.attempts == 0
    assert row.last_error == "waiting: secondary rate limit"
    due = row.next_attempt_at if row.next_attempt_at.tzinfo else row.next_attempt_at.replace(tzinfo=UTC)
    assert timedelta(seconds=100) < due - datetime.now(UTC) <= timedelta(seconds=121)
