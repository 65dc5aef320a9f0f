"""The durable inbox: store deliveries with group commit, claim them with leases, finish or retry them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, delete, or_, select, update

from github_app.db.models import Delivery
from github_app.db.sqlite_writes import QueuedWriteConnection
from github_app.jobs import JobTable, jittered, utcnow

log = logging.getLogger(__name__)

STATES = ("pending", "processing", "done", "dead", "ignored")


@dataclass(frozen=True)
class IncomingDelivery:
    """A verified webhook delivery about to be stored."""

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    payload: str
    ignored: bool


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a worker holds a lease on."""

    id: int
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    payload: str
    attempts: int
    lease_token: str


_INSERT_COLUMNS = (
    "delivery_id", "event", "action", "installation_id", "payload", "received_at", "state", "attempts",
    "next_attempt_at", "completed_count", "lease_owner", "lease_until",
)  # fmt: skip


def _insert_sql(dialect: Any, returning: bool) -> str:
    mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
    sql = (
        f"INSERT INTO {Delivery.__tablename__} ({', '.join(_INSERT_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_INSERT_COLUMNS))}) ON CONFLICT (delivery_id) DO NOTHING"
    )
    return sql + " RETURNING delivery_id, id" if returning else sql


def insert_deliveries(engine: Engine, items: Sequence[IncomingDelivery]) -> set[str]:
    """Insert ``items`` in one transaction; return the delivery ids that were new."""
    return set(store_deliveries(engine, items))


def store_deliveries(
    engine: Engine, items: Sequence[IncomingDelivery], leases: dict[str, str] | None = None,
    lease_seconds: float = 0.0,
) -> dict[str, int]:
    """Insert ``items`` in one transaction; return ``{delivery_id: row id}`` for those that were new.

    ``leases`` maps some delivery ids to a lease token: those rows are stored already claimed by
    that token (``processing``, first attempt, leased for ``lease_seconds``), for a worker of this
    process that is idle right now, which then needs no claim transaction of its own.

    This is the intake's hot path, so it talks to the driver directly (one prepared INSERT,
    executed per row inside one transaction) instead of building a SQLAlchemy statement per
    batch; the row layout and value conversions are the ``Delivery`` model's own.
    """
    if not items:
        return {}
    leases = leases or {}
    dialect = engine.dialect
    now = utcnow()
    later = now + timedelta(seconds=lease_seconds)
    stamp = Delivery.__table__.c.received_at.type.bind_processor(dialect)
    when, until = (stamp(now), stamp(later)) if stamp else (now, later)
    body = Delivery.__table__.c.payload.type.bind_processor(dialect)  # compresses on SQLite, off the event loop
    rows = []
    # one order for every batch, so two concurrent batches never wait on each other's keys in a cycle
    for it in sorted(items, key=lambda it: it.delivery_id):
        token = leases.get(it.delivery_id)
        if it.ignored:
            state: tuple[Any, ...] = ("ignored", 0, None, None)
        elif token is None:
            state = ("pending", 0, None, None)
        else:
            state = ("processing", 1, token, until)
        payload = body(it.payload) if body else it.payload
        rows.append((it.delivery_id, it.event, it.action, it.installation_id, payload, when, state[0], state[1], when,
                     0, state[2], state[3]))  # fmt: skip
    # A pooled connection that broke since its last use (the database restarted) fails its first
    # statement, so the batch goes again once on a fresh connection instead of answering GitHub 503,
    # which GitHub does not redeliver by itself. Should the break fall on the commit and the commit
    # have landed, the second try finds the rows stored and reports them as duplicates; a row stored
    # leased for a worker is then picked up when its lease expires.
    for attempt in (1, 2):
        raw = engine.raw_connection()
        driver = None
        try:
            driver = raw.driver_connection
            if dialect.name == "postgresql":
                new = _insert_postgresql(driver, _insert_sql(dialect, returning=True), rows)
            else:
                new = _insert_sqlite(driver, _insert_sql(dialect, returning=False), rows)
            raw.commit()
            return new
        except BaseException as exc:
            broken = _is_disconnect(engine, exc, driver)
            if broken:
                raw.invalidate(exc if isinstance(exc, Exception) else None)  # never handed out again
            else:
                with contextlib.suppress(Exception):  # a dead connection can't roll back; keep the first error
                    raw.rollback()
            if not broken or attempt == 2:
                raise
            log.warning("inbox.reconnected", extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        finally:
            raw.close()
    raise AssertionError("unreachable")


def _bad_row(engine: Engine, exc: BaseException) -> bool:
    """True when ``exc`` is the database refusing a value (a row's fault), not the database failing."""
    dbapi = engine.dialect.dbapi
    kinds = tuple(k for k in (getattr(dbapi, "DataError", None), getattr(dbapi, "IntegrityError", None)) if k)
    return isinstance(exc, (*kinds, OverflowError))


def store_each(
    engine: Engine, items: Sequence[IncomingDelivery], leases: dict[str, str], lease_seconds: float
) -> tuple[dict[str, int], dict[str, Exception]]:
    """``store_deliveries`` one item per transaction: the new ones, and the error of each refused one."""
    new: dict[str, int] = {}
    failed: dict[str, Exception] = {}
    for item in items:
        try:
            new.update(store_deliveries(engine, [item], leases, lease_seconds))
        except Exception as exc:  # noqa: BLE001 - reported to this item's sender alone
            log.warning("inbox.row_refused", extra={"delivery_id": item.delivery_id,
                                                    "error": f"{type(exc).__name__}: {str(exc)[:200]}"})  # fmt: skip
            failed[item.delivery_id] = exc
    return new, failed


def _is_disconnect(engine: Engine, exc: BaseException, driver: Any) -> bool:
    """True when ``exc`` means the connection itself is gone (not a constraint or SQL error)."""
    if not isinstance(exc, Exception):
        return False
    if getattr(driver, "closed", False) or getattr(driver, "broken", False):
        return True
    try:
        return bool(engine.dialect.is_disconnect(exc, driver, None))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the dialect could not tell: treat it as an ordinary error
        return False


def _insert_postgresql(conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> dict[str, int]:
    new: dict[str, int] = {}
    with conn.cursor() as cur:
        # psycopg pipelines the executions: one round trip for the whole batch
        cur.executemany(sql, rows, returning=True)
        while True:
            row = cur.fetchone()
            if row is not None:
                new[row[0]] = row[1]
            if not cur.nextset():
                break
    return new


def _insert_sqlite(conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> dict[str, int]:
    new: dict[str, int] = {}
    cur = conn.cursor()
    try:
        if not conn.in_transaction:  # the engine runs pysqlite in autocommit mode; take the write lock now
            if isinstance(conn, QueuedWriteConnection):
                conn.begin_write()
            else:
                cur.execute("BEGIN IMMEDIATE")
        for row in rows:
            cur.execute(sql, row)
            if cur.rowcount == 1:
                new[row[0]] = cur.lastrowid
    finally:
        cur.close()
    return new


class Taker(Protocol):
    """Idle workers in this process that can take new deliveries straight from the intake."""

    name: str
    lease_seconds: float

    def reserve(self, n: int) -> list[asyncio.Future[ClaimedDelivery | None]]:
        """Up to ``n`` idle workers, each waiting on its future: a job, or None to look for work itself."""
        ...


class InboxWriter:
    """Batch concurrent deliveries into few transactions (group commit); answer each after its commit."""

    def __init__(self, engine: Engine, max_batch: int = 500, flushers: int | None = None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        # SQLite serialises writers anyway; PostgreSQL commits several batches at once
        self.flushers = flushers or (1 if engine.dialect.name == "sqlite" else 3)
        self._queue: asyncio.Queue[tuple[IncomingDelivery, asyncio.Future[bool]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_stored: list[Any] = []  # callbacks, e.g. to wake in-process workers
        self.taker: Taker | None = None  # in-process workers that take new deliveries as they are stored

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name=f"inbox-writer-{i}") for i in range(self.flushers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    async def submit(self, item: IncomingDelivery) -> bool:
        """Store ``item`` durably; True if it was new, False if its delivery id was already stored."""
        if not self._tasks:
            raise RuntimeError("InboxWriter.start() was not called")
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[IncomingDelivery, asyncio.Future[bool]]]) -> None:
        # duplicates inside one batch: the first wins, the rest are reported as already stored
        unique: dict[str, IncomingDelivery] = {}
        for item, _ in batch:
            unique.setdefault(item.delivery_id, item)
        # hand work to idle workers of this process: stored already leased to them, so no claim is needed
        wanted = [it for it in unique.values() if not it.ignored]
        waiters = self.taker.reserve(len(wanted)) if self.taker is not None and wanted else []
        owner = self.taker.name if self.taker is not None else ""
        leases = {it.delivery_id: f"{owner}:{uuid.uuid4().hex[:12]}" for it in wanted[: len(waiters)]}
        try:
            stored = await self._store(list(unique.values()), leases)
            if isinstance(stored, Exception):  # the database is down: every waiting request gets a 503
                log.error("inbox.write_failed", extra={"batch": len(batch)}, exc_info=stored)
                _answer(batch, {}, dict.fromkeys(unique, stored))
                return
            new_ids, failed = stored
            _answer(batch, new_ids, failed)
            handed = [
                ClaimedDelivery(new_ids[it.delivery_id], it.delivery_id, it.event, it.action, it.installation_id,
                                it.payload, 1, leases[it.delivery_id])
                for it in wanted[: len(waiters)]
                if it.delivery_id in new_ids
            ]  # fmt: skip
            for waiter, job in zip(waiters, handed, strict=False):
                if not waiter.done():
                    waiter.set_result(job)
            if len(handed) < len(new_ids):  # more was stored than handed over: wake a worker to claim it
                for callback in self.on_stored:
                    callback()
        finally:
            for waiter in waiters:  # unused reservations (duplicates, a failed write): look for work as usual
                if not waiter.done():
                    waiter.set_result(None)

    async def _store(
        self, items: list[IncomingDelivery], leases: dict[str, str]
    ) -> tuple[dict[str, int], dict[str, Exception]] | Exception:
        """Store a batch: the new rows and the refused ones, or the error that failed it all."""
        lease_seconds = self.taker.lease_seconds if self.taker is not None else 0.0
        try:
            return await asyncio.to_thread(store_deliveries, self.engine, items, leases, lease_seconds), {}
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            if len(items) == 1 or not _bad_row(self.engine, exc):
                return exc
        # one row the database refused must not cost the others their place: store them one by one
        return await asyncio.to_thread(store_each, self.engine, items, leases, lease_seconds)


def _answer(
    batch: list[tuple[IncomingDelivery, asyncio.Future[bool]]], new_ids: dict[str, int], failed: dict[str, Exception]
) -> None:
    """Tell each waiting request: new (True), already stored (False), or the error that refused it."""
    claimed: set[str] = set()
    for item, fut in batch:
        error = failed.get(item.delivery_id)
        is_new = error is None and item.delivery_id in new_ids and item.delivery_id not in claimed
        claimed.add(item.delivery_id)  # the first request with an id is the one told it was new
        if fut.done():  # its sender went away
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(is_new)


DELIVERIES = JobTable(Delivery, working="processing")
_CLAIMED_COLUMNS = (
    Delivery.id, Delivery.delivery_id, Delivery.event, Delivery.action, Delivery.installation_id, Delivery.payload,
    Delivery.attempts,
)  # fmt: skip


def claim(engine: Engine, owner: str, lease_seconds: float, limit: int = 1) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries: pending ones, and processing ones whose lease expired."""
    token, rows = DELIVERIES.claim(engine, owner, lease_seconds, limit, _CLAIMED_COLUMNS)
    return [ClaimedDelivery(id=r.id, delivery_id=r.delivery_id, event=r.event, action=r.action,
                            installation_id=r.installation_id, payload=r.payload, attempts=r.attempts,
                            lease_token=token) for r in rows]  # fmt: skip


def renew_lease(engine: Engine, job: ClaimedDelivery, lease_seconds: float) -> bool:
    """Extend the lease on a job still being worked on; False if it was lost to another worker."""
    return DELIVERIES.renew(engine, job.id, job.lease_token, lease_seconds)


def complete(engine: Engine, job: ClaimedDelivery) -> bool:
    """Mark a job done if we still hold its lease; False if another worker took it over."""
    return complete_many(engine, [job])[0]


def complete_many(engine: Engine, jobs: Sequence[ClaimedDelivery]) -> list[bool]:
    """``complete`` for several jobs in one transaction (one commit, one disk sync); a result per job."""
    now = utcnow()
    with engine.begin() as conn:
        return [
            DELIVERIES.finish(conn, job.id, job.lease_token, "done", {
                "completed_at": now, "completed_count": Delivery.completed_count + 1, "last_error": None,
            })
            for job in jobs
        ]  # fmt: skip


class Completer:
    """Group commit for finished jobs: workers that finish together share one transaction."""

    def __init__(self, engine: Engine, max_batch: int = 200) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[ClaimedDelivery, asyncio.Future[bool]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-completer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def complete(self, job: ClaimedDelivery) -> bool:
        """Mark ``job`` done if its lease is still ours (False if another worker took it over)."""
        if self._task is None or self._task.done():
            return await asyncio.to_thread(complete, self.engine, job)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(complete_many, self.engine, [job for job, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting worker handles the failure as before
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.cancel()
                raise
            for (_, fut), ok in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(ok)


def fail(
    engine: Engine, job: ClaimedDelivery, error: str, *, max_attempts: int, base: float, maximum: float,
    permanent: bool = False,
) -> str | None:
    """Record a failed attempt: schedule a retry, or park the delivery as dead. The new state; None if the lease was lost."""
    with engine.begin() as conn:
        return DELIVERIES.fail(conn, job.id, job.lease_token, job.attempts, error, permanent=permanent,
                               max_attempts=max_attempts, base=base, maximum=maximum)  # fmt: skip


def defer(engine: Engine, job: ClaimedDelivery, reason: str, after: float) -> bool:
    """Park a claimed delivery until ``after`` seconds from now without counting the attempt it was claimed for.

    False if the lease was lost meanwhile (another worker owns the delivery now).
    """
    return DELIVERIES.defer(engine, job.id, job.lease_token, reason, after)


def release_all_leases(engine: Engine) -> int:
    """Make every processing delivery claimable now (single-process SQLite start-up after a crash)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery)
            .where(Delivery.state == "processing")
            .values(state="pending", lease_owner=None, lease_until=None, next_attempt_at=utcnow())
        )
    return result.rowcount


def retry_delivery(engine: Engine, delivery_id: str) -> bool:
    """Put a dead (or any finished) delivery back in the queue by its delivery id or row id."""
    cond = Delivery.delivery_id == delivery_id
    if delivery_id.isdigit():
        cond = or_(cond, Delivery.id == int(delivery_id))
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery)
            .where(cond, Delivery.state != "processing")
            .values(state="pending", attempts=0, next_attempt_at=utcnow(), last_error=None)
        )
    return result.rowcount > 0


def list_deliveries(engine: Engine, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest deliveries, optionally in one state."""
    stmt = select(
        Delivery.id, Delivery.delivery_id, Delivery.event, Delivery.action, Delivery.state,
        Delivery.attempts, Delivery.received_at, Delivery.last_error,
    ).order_by(Delivery.id.desc()).limit(limit)  # fmt: skip
    if state:
        stmt = stmt.where(Delivery.state == state)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def get_delivery(engine: Engine, ref: str) -> dict[str, Any] | None:
    """One delivery, payload included, by its delivery id or row id."""
    cond = Delivery.delivery_id == ref
    if ref.isdigit():
        cond = or_(cond, Delivery.id == int(ref))
    with engine.connect() as conn:
        row = conn.execute(select(Delivery).where(cond).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def count_by_state(engine: Engine) -> dict[str, int]:
    """Number of deliveries per state."""
    return DELIVERIES.counts(engine)


PRUNABLE = ("done", "ignored", "dead")


def prune_deliveries(
    engine: Engine,
    older_than: timedelta,
    states: Sequence[str] = ("done", "ignored"),
    *,
    batch_size: int = 2000,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete deliveries in ``states`` received more than ``older_than`` ago; return how many went.

    Only finished states can be pruned (pending and processing deliveries are work still to do).
    The default leaves dead deliveries for a person to look at. Rows go in batches of
    ``batch_size``, each its own transaction, so a large backlog never holds SQLite's write lock,
    and the intake behind it, for long. ``progress`` is called with the running total per batch.
    """
    unknown = sorted(set(states) - set(PRUNABLE))
    if unknown:
        raise ValueError(f"cannot prune deliveries in state {', '.join(unknown)}: only {', '.join(PRUNABLE)} can go")
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    cutoff = (now or utcnow()) - older_than
    wanted = Delivery.state.in_(list(states)) & (Delivery.received_at < cutoff)
    total = 0
    while True:
        with engine.begin() as conn:
            ids = conn.execute(select(Delivery.id).where(wanted).order_by(Delivery.id).limit(batch_size)).scalars().all()
            if not ids:
                break
            # the state is checked again: a delivery retried since the select stays
            total += conn.execute(delete(Delivery).where(Delivery.id.in_(ids), wanted)).rowcount
        if progress is not None:
            progress(total)
        if len(ids) < batch_size:
            break
    return total


async def prune_forever(engine: Engine, older_than: timedelta, interval: float, stop: asyncio.Event) -> None:
    """Prune finished deliveries older than ``older_than`` now and every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            pruned = await asyncio.to_thread(prune_deliveries, engine, older_than)
            if pruned:
                log.info("inbox.pruned", extra={"deliveries": pruned, "older_than_days": older_than.days})
        except Exception:  # the pruner must survive a database blip; the next round tries again
            log.exception("inbox.prune_failed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(jittered(interval)):
                await stop.wait()
