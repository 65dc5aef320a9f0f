"""Leased job tables: the one protocol the inbox (deliveries) and the outbox (notifications) both follow.

A job row is ``pending`` until it is due, then leased by one worker (its working state, with a
lease token and an end time, and one more attempt counted), then finished, retried later with
backoff, parked without counting the attempt, or buried as ``dead``. Every change after the claim
is a conditional UPDATE that holds only while the caller still owns the lease, so a worker that
lost its lease (it was too slow, or another took over after a crash) can change nothing.

Both tables are worked by the same wake-and-poll loop (``ConsumerLoop``): work while there is work,
then rest at a ``Doorbell`` until a producer rings it, hands a job over, the poll interval passes or
the consumer is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Row, case, func, or_, select, update
from tenacity import RetryCallState, Retrying, wait_random_exponential

log = logging.getLogger(__name__)

Job = TypeVar("Job")


def utcnow() -> datetime:
    return datetime.now(UTC)


def jittered(seconds: float) -> float:
    """``seconds`` give or take 20%, so idle consumers don't poll in lockstep."""
    return seconds * random.uniform(0.8, 1.2)


def retry_delay(attempt: int, base: float, maximum: float) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th failure (1-based)."""
    wait = wait_random_exponential(multiplier=base, max=maximum)
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return float(wait(state))


@dataclass(frozen=True)
class JobTable:
    """One table of leased jobs: ``model`` has id, state, attempts, next_attempt_at, lease_owner, lease_until, last_error."""

    model: Any  # the mapped class (Delivery, OutboxMessage)
    working: str  # the state of a leased row ("processing", "sending")
    error_limit: int = 4000  # characters of last_error kept

    def _held(self, job_id: int, token: str) -> ColumnElement[bool]:
        m = self.model
        return (m.id == job_id) & (m.lease_owner == token) & (m.state == self.working)  # type: ignore[no-any-return]

    def claim(
        self, engine: Engine, owner: str, lease_seconds: float, limit: int, columns: Sequence[Any]
    ) -> tuple[str, list[Row[Any]]]:
        """Lease up to ``limit`` due jobs (pending and due, or leased and expired); their ``columns``, by id."""
        m = self.model
        now = utcnow()
        token = f"{owner}:{uuid.uuid4().hex[:12]}"
        due = or_((m.state == "pending") & (m.next_attempt_at <= now), (m.state == self.working) & (m.lease_until < now))
        with engine.begin() as conn:
            ids = conn.execute(
                select(m.id).where(due).order_by(m.next_attempt_at, m.id).limit(limit).with_for_update(skip_locked=True)
            ).scalars().all()  # fmt: skip
            if not ids:
                return token, []
            rows = conn.execute(
                update(m).where(m.id.in_(ids))
                .values(state=self.working, lease_owner=token, lease_until=now + timedelta(seconds=lease_seconds),
                        attempts=m.attempts + 1)
                .returning(*columns)
            ).all()  # fmt: skip
        return token, sorted(rows, key=lambda r: r[0])

    def renew(self, engine: Engine, job_id: int, token: str, lease_seconds: float) -> bool:
        """Extend a lease still held; False if it was lost to another worker."""
        with engine.begin() as conn:
            result = conn.execute(update(self.model).where(self._held(job_id, token))
                                  .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)))  # fmt: skip
        return result.rowcount == 1

    def finish(self, conn: Connection, job_id: int, token: str, state: str, values: Mapping[str, Any]) -> bool:
        """Move a held job to ``state`` in the caller's transaction (so its record commits with it); False if lost."""
        result = conn.execute(
            update(self.model).where(self._held(job_id, token))
            .values(state=state, lease_owner=None, lease_until=None, **values)
        )  # fmt: skip
        return result.rowcount == 1

    def fail(
        self, conn: Connection, job_id: int, token: str, attempts: int, error: str, *, permanent: bool,
        max_attempts: int, base: float, maximum: float, not_before: float = 0.0,
        dead_values: Mapping[str, Any] | None = None,
    ) -> str | None:  # fmt: skip
        """Schedule a retry with backoff, or bury the job as dead; the new state, or None if the lease was lost."""
        dead = permanent or attempts >= max_attempts
        delay = 0.0 if dead else max(retry_delay(attempts, base, maximum), min(not_before, maximum))
        state = "dead" if dead else "pending"
        values = {"last_error": error[: self.error_limit], "next_attempt_at": utcnow() + timedelta(seconds=delay),
                  **((dead_values or {}) if dead else {})}  # fmt: skip
        return state if self.finish(conn, job_id, token, state, values) else None

    def defer(self, engine: Engine, job_id: int, token: str, reason: str, after: float) -> bool:
        """Park a held job until ``after`` seconds from now without counting the attempt it was claimed for."""
        m = self.model
        with engine.begin() as conn:
            return self.finish(conn, job_id, token, "pending", {
                "attempts": case((m.attempts > 0, m.attempts - 1), else_=0),
                "last_error": f"waiting: {reason}"[: self.error_limit],
                "next_attempt_at": utcnow() + timedelta(seconds=after),
            })  # fmt: skip

    def seconds_until_due(self, engine: Engine) -> float | None:
        """Seconds until the next job is due (a pending one, or an expired lease); 0 if overdue, None if none waits."""
        m = self.model
        with engine.connect() as conn:
            nxt = conn.execute(select(func.min(m.next_attempt_at)).where(m.state == "pending")).scalar_one()
            leased = conn.execute(select(func.min(m.lease_until)).where(m.state == self.working)).scalar_one()
        moments = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (nxt, leased) if t is not None]
        return max(0.0, (min(moments) - utcnow()).total_seconds()) if moments else None

    def counts(self, engine: Engine) -> dict[str, int]:
        """Number of jobs per state."""
        with engine.connect() as conn:
            rows = conn.execute(select(self.model.state, func.count()).group_by(self.model.state)).all()
        return {state: n for state, n in rows}


class Doorbell(Generic[Job]):
    """Where the idle consumers of one job table wait in line until there may be work.

    A ring wakes the first in line; with no one waiting it is remembered, so the next consumer to
    rest looks again at once (work stored while a claim was missing it is not left for the timer).
    A producer may also take consumers out of line (``reserve``) and hand each one a job.
    """

    def __init__(self) -> None:
        self._line: deque[asyncio.Future[Job | None]] = deque()
        self._missed = False
        self._closed = False

    def ring(self) -> None:
        """Tell one resting consumer there may be new work."""
        while self._line:
            waiter = self._line.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._missed = True

    @property
    def resting(self) -> int:
        """How many consumers wait in line."""
        return sum(1 for waiter in self._line if not waiter.done())

    def reserve(self, n: int) -> list[asyncio.Future[Job | None]]:
        """Take up to ``n`` resting consumers out of line; each waits on its future for a job, or None to look."""
        taken: list[asyncio.Future[Job | None]] = []
        if self._closed:
            return taken
        while self._line and len(taken) < n:
            waiter = self._line.popleft()
            if not waiter.done():
                taken.append(waiter)
        return taken

    def close(self) -> None:
        """Release every consumer in line and let none rest again (on stop)."""
        self._closed = True
        for waiter in self._line:
            if not waiter.done():
                waiter.set_result(None)
        self._line.clear()

    async def rest(self, timeout: float | None, stop: asyncio.Event) -> Job | None:
        """Wait for a ring, ``stop`` or ``timeout`` seconds (None: no limit); the job handed over, if any."""
        if self._closed or stop.is_set():
            return None
        if self._missed:
            self._missed = False
            return None
        waiter: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._line.append(waiter)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((waiter, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopped
            if not waiter.done() and waiter in self._line:  # gave up its place (timeout, stop, cancelled)
                self._line.remove(waiter)
                waiter.cancel()
        if waiter.cancelled():
            return None
        # a reserved waiter is out of line: the producer resolves it right after storing the job
        return await waiter


@dataclass
class ConsumerLoop(Generic[Job]):
    """The wake-and-poll loop of one consumer of a leased job table.

    Run ``step`` (claim and process; True if it found work) while it finds work. Then rest at the
    doorbell for ``idle_wait()`` seconds, jittered (None: until rung), processing with ``handle``
    any job handed over meanwhile. A failure of the database is logged as ``<name>.loop_error``;
    the consumer then rests at least a second before it looks again. Never raises but on cancel.
    """

    name: str
    step: Callable[[], Awaitable[bool]]
    doorbell: Doorbell[Job]
    stop: asyncio.Event
    poll_seconds: float
    idle_wait: Callable[[], Awaitable[float | None]]
    handle: Callable[[Job], Awaitable[None]] | None = None
    log_fields: dict[str, Any] = field(default_factory=dict)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                if await self.step():
                    continue
                wait = await self.idle_wait()
            except Exception:  # the loop boundary: a database blip must not end the consumer
                log.exception(f"{self.name}.loop_error", extra=self.log_fields)
                wait = max(self.poll_seconds, 1.0)
            timeout = None if wait is None else jittered(wait)
            while (handed := await self.doorbell.rest(timeout, self.stop)) is not None and self.handle is not None:
                try:
                    await self.handle(handed)
                except Exception:  # the database blipped while recording the outcome; the lease will expire
                    log.exception(f"{self.name}.loop_error", extra=self.log_fields)
