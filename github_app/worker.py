"""Workers: claim deliveries from the inbox, dispatch them, and finish, retry or bury them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback

from github_app import inbox
from github_app.jobs import ConsumerLoop, Doorbell, jittered
from github_app.routing import Context, Event, PermanentError, RetryLater, Router

log = logging.getLogger(__name__)


class WorkerPool:
    """``count`` asyncio workers in this process.

    Idle workers wait in line. The intake of this process hands new deliveries straight to them,
    stored already leased (``reserve``), so they start without a claim query. Other new work wakes
    one of them, and a worker that claims a job wakes the next before processing it, so a batch of
    deliveries fans out to as many workers as it needs; a timer wakes one every ``poll_seconds`` for
    work stored elsewhere (another process, a retry that came due). An idle process thus costs one
    claim query per poll interval, not one per worker.
    """

    def __init__(self, ctx: Context, router: Router, count: int, name: str | None = None) -> None:
        self.ctx = ctx
        self.router = router
        self.count = count
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_seconds = ctx.settings.lease_seconds
        self._doorbell: Doorbell[inbox.ClaimedDelivery] = Doorbell()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._completer = inbox.Completer(ctx.engine)
        self.processed = 0

    def wake(self) -> None:
        """Tell one idle worker there may be new work (called by the inbox writer)."""
        self._doorbell.ring()

    @property
    def idle(self) -> int:
        """How many workers are resting, waiting for work."""
        return self._doorbell.resting

    def reserve(self, n: int) -> list[asyncio.Future[inbox.ClaimedDelivery | None]]:
        """Take up to ``n`` idle workers out of line for the intake, which resolves each one's future
        with a delivery it stored leased to that worker, or with None (then the worker looks itself)."""
        return self._doorbell.reserve(0 if self._stop.is_set() else n)

    async def _poll(self) -> None:
        poll = self.ctx.settings.poll_seconds
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(jittered(poll)):
                    await self._stop.wait()
            self.wake()

    async def _until_rung(self) -> None:
        return None  # idle workers rest until woken: by new work, or by the one poll timer of the pool

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._completer.start()
        self._tasks = [loop.create_task(self._loop(i), name=f"worker-{i}") for i in range(self.count)]
        self._tasks.append(loop.create_task(self._poll(), name="worker-poll"))

    async def stop(self, grace: float = 10.0) -> None:
        self._stop.set()
        self._doorbell.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        await self._completer.stop()

    async def run_until_idle(self, timeout: float = 60.0) -> None:
        """Process due deliveries until none is left (used by tests and the demo)."""
        async with asyncio.timeout(timeout):
            while await self.step():
                pass

    async def step(self) -> bool:
        """Claim and process at most one delivery; False when nothing was due."""
        s = self.ctx.settings
        jobs = await asyncio.to_thread(inbox.claim, self.ctx.engine, self.name, s.lease_seconds, 1)
        if not jobs:
            return False
        self.wake()  # there may be more: let the next idle worker look while this one works
        await self._process(jobs[0])
        return True

    async def _loop(self, index: int) -> None:
        await ConsumerLoop(
            name="worker", step=self.step, doorbell=self._doorbell, stop=self._stop,
            poll_seconds=self.ctx.settings.poll_seconds, idle_wait=self._until_rung, handle=self._process,
            log_fields={"worker": index},
        ).run()  # fmt: skip

    async def _heartbeat(self, job: inbox.ClaimedDelivery) -> None:
        lease = self.ctx.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not await asyncio.to_thread(inbox.renew_lease, self.ctx.engine, job, lease):
                log.warning("worker.lease_lost", extra={"delivery_id": job.delivery_id})
                return

    async def _process(self, job: inbox.ClaimedDelivery) -> None:
        s = self.ctx.settings
        fields = {"delivery_id": job.delivery_id, "installation_id": job.installation_id, "event": job.event}
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            event = Event.from_delivery(
                job.event, job.action, job.delivery_id, job.installation_id, job.payload, job.attempts
            )
            await self.router.dispatch(self.ctx, event)
        except RetryLater as wait:
            parked = await asyncio.to_thread(inbox.defer, self.ctx.engine, job, wait.reason, wait.after)
            log.info("delivery.deferred", extra={**fields, "after_s": round(wait.after, 1), "reason": wait.reason,
                                                 "parked": parked})  # fmt: skip
            return
        except Exception as exc:  # noqa: BLE001 - the worker boundary: every failure is recorded for retry
            permanent = isinstance(exc, PermanentError)
            error = f"{type(exc).__name__}: {exc}"
            if not permanent:
                error += "\n" + "".join(traceback.format_exception(exc, limit=8))
            state = await asyncio.to_thread(
                inbox.fail, self.ctx.engine, job, error,
                max_attempts=s.max_attempts, base=s.retry_base_seconds, maximum=s.retry_max_seconds,
                permanent=permanent,
            )  # fmt: skip
            log.warning("delivery.failed", extra={**fields, "attempt": job.attempts, "state": state, "error": str(exc)})
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if await self._completer.complete(job):
            self.processed += 1
            log.info("delivery.processed", extra=fields)
        else:
            log.warning("delivery.lease_lost_before_completion", extra=fields)
