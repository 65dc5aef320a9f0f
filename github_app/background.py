"""What a working gonogo process runs: the delivery workers and the jobs beside them.

``gonogo serve`` (with workers) and ``gonogo worker`` run the same set, so a deployment that splits
intake and work into separate processes (fly.toml's ``web`` and ``worker`` groups) still delivers
notifications, reminds reviewers, expires escalations and prunes the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from github_app import inbox, notify, redelivery
from github_app.features.escalation import sweep, sweep_forever
from github_app.features.gate import recover_stuck
from github_app.github import GitHubClients
from github_app.routing import Context, Router
from github_app.worker import WorkerPool

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0


class Background:
    """The workers, the notification outbox, the escalation sweeper and the inbox pruner of one process.

    Building it registers the outbox dispatcher as the ``outbox`` service, so handlers can wake it;
    nothing runs until ``start`` (or ``run_until_idle``).
    """

    def __init__(self, ctx: Context, router: Router, workers: int) -> None:
        self.ctx = ctx
        self.pool = WorkerPool(ctx, router, workers)
        self.outbox = notify.OutboxDispatcher(ctx.engine, networks=ctx.settings.notification_networks)
        ctx.outbox = self.outbox
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.redelivery = redelivery.RedeliveryStats()

    @property
    def retention(self) -> timedelta | None:
        days = self.ctx.settings.inbox_retention_days
        return timedelta(days=days) if days else None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.pool.start()
        self.outbox.start()
        self._tasks = [
            loop.create_task(sweep_forever(self.ctx, self.ctx.settings.sweep_seconds, self._stop), name="sweeper")
        ]
        if self.retention is not None:
            self._tasks.append(
                loop.create_task(
                    inbox.prune_forever(self.ctx.engine, self.retention, PRUNE_EVERY_SECONDS, self._stop),
                    name="inbox-pruner",
                )
            )
        clients = self.ctx.services.get("github")
        if self.ctx.settings.redelivery_seconds > 0 and isinstance(clients, GitHubClients):
            self._tasks.append(
                loop.create_task(
                    redelivery.redeliver_forever(self.ctx.engine, clients, self.ctx.settings.redelivery_seconds,
                                                 self._stop, self.redelivery),
                    name="redelivery",
                )
            )
        self.started = True

    async def stop(self) -> None:
        """Stop everything within the shutdown grace: running work may finish until then, the rest is cancelled.

        A job cancelled half-way (a sweeper waiting on an unreachable GitHub, an evaluation) leaves its
        leases to run out, so another process takes the work over; nothing is lost by cancelling it.
        """
        grace = self.ctx.settings.shutdown_grace_seconds
        self._stop.set()
        stops = [self._periodic_stopped(grace), self.pool.stop(grace)]
        if self.started:
            stops.append(self.outbox.stop(grace))
        await asyncio.gather(*stops)
        self._tasks = []
        self.started = False

    async def _periodic_stopped(self, grace: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            log.warning("background.cancelled", extra={"task": task.get_name(), "grace_s": grace})
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_until_idle(self, timeout: float) -> None:
        """Batch mode: process every due delivery, run one sweep of escalations, send the notifications
        that are due now (a message waiting out a retry delay is left for a later run), prune the inbox."""
        async with asyncio.timeout(timeout):
            await self.pool.run_until_idle(timeout)
            try:
                await sweep(self.ctx)
                await recover_stuck(self.ctx)
            except Exception:  # one bad round must not fail the batch; it is logged
                log.exception("escalation.sweep_failed")
            while await self.outbox.step():
                pass
            if self.retention is not None:
                await asyncio.to_thread(inbox.prune_deliveries, self.ctx.engine, self.retention)
