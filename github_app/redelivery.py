"""Recover webhooks gonogo missed: ask GitHub to redeliver the failed deliveries it never stored.

GitHub never redelivers a failed delivery by itself. A ``deployment_protection_rule`` lost while
gonogo was down (or answering 5xx) would leave its deployment waiting for up to 30 days. So, on
start-up and every ``GONOGO_REDELIVERY_SECONDS``, one process (the holder of the ``redelivery``
lease) lists the app's recent deliveries and requests another attempt of each one that failed,
whose GUID is not in the inbox, and that no later attempt delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from github_app.db.models import Delivery, Lease
from github_app.github import GitHubClients, GitHubError, call, parse_time
from github_app.inbox import utcnow

log = logging.getLogger(__name__)

LEASE_NAME = "redelivery"
MAX_PAGES = 10  # 1,000 deliveries: GitHub lists the newest first and keeps 3 days of them
MAX_REQUESTS_PER_PASS = 25  # a long outage is caught up over several passes, gently on the rate limit
MAX_ATTEMPTS_PER_EVENT = 4  # an event that failed this many times is left for a person (gonogo deliveries)
LOOKBACK = timedelta(days=3)  # GitHub cannot redeliver anything older


@dataclass
class PassResult:
    """What one pass saw and did."""

    listed: int = 0
    failed_events: int = 0
    requested: list[str] = field(default_factory=list)  # GUIDs redelivery was requested for
    skipped_stored: int = 0
    skipped_gave_up: int = 0
    errors: int = 0
    ran: bool = True  # False: another process held the lease


class RedeliveryStats:
    """Counters of this process's passes, shown on /metrics."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, result: PassResult) -> None:
        if not result.ran:
            self.counts["passes_skipped"] += 1
            return
        self.counts["passes"] += 1
        self.counts["requested"] += len(result.requested)
        self.counts["request_errors"] += result.errors


def take_lease(engine: Engine, owner: str, hold: timedelta, now: datetime | None = None) -> bool:
    """Take the redelivery lease for ``hold`` if it is free, expired, or already ours; return whether we hold it."""
    now = now or utcnow()
    with engine.begin() as conn:
        taken = conn.execute(
            update(Lease).where(Lease.name == LEASE_NAME, (Lease.until < now) | (Lease.owner == owner))
            .values(owner=owner, until=now + hold)
        ).rowcount  # fmt: skip
    if taken == 1:
        return True
    try:
        with engine.begin() as conn:
            conn.execute(insert(Lease).values(name=LEASE_NAME, owner=owner, until=now + hold))
    except IntegrityError:
        return False  # another process holds it (or took it between the two statements)
    return True


def _stored(engine: Engine, guids: list[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(guids), 500):
            chunk = guids[start:start + 500]
            found.update(conn.execute(select(Delivery.delivery_id).where(Delivery.delivery_id.in_(chunk))).scalars())
    return found


def _next_cursor(response: Any) -> str | None:
    """The ``cursor`` of the Link header's next page (this listing pages by cursor, not by page number)."""
    link = response.raw_response.links.get("next")
    return httpx.URL(link["url"]).params.get("cursor") if link else None


async def _list_recent(clients: GitHubClients, since: datetime) -> list[Any]:
    """The app's deliveries newer than ``since``, newest first, up to MAX_PAGES pages."""
    gh = clients.app()
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        if cursor is None:
            response = await call(gh.rest.apps.async_list_webhook_deliveries(per_page=100))
        else:
            response = await call(gh.rest.apps.async_list_webhook_deliveries(per_page=100, cursor=cursor))
        page = response.parsed_data
        items.extend(page)
        if not page or (parse_time(page[-1].delivered_at) or since) < since:
            break
        cursor = _next_cursor(response)
        if cursor is None:
            break
    return [d for d in items if (parse_time(d.delivered_at) or since) >= since]


def _choose(items: list[Any]) -> tuple[list[Any], int, int]:
    """Pick one failed delivery per event to redeliver: (chosen oldest first, failed events, events given up)."""
    by_guid: dict[str, list[Any]] = {}
    for d in items:
        by_guid.setdefault(d.guid, []).append(d)
    chosen, failed, gave_up = [], 0, 0
    for attempts in by_guid.values():
        if any(200 <= a.status_code < 300 for a in attempts):
            continue  # delivered, at first or by a later attempt
        failed += 1
        if len(attempts) >= MAX_ATTEMPTS_PER_EVENT:
            gave_up += 1
            continue
        chosen.append(max(attempts, key=lambda a: (parse_time(a.delivered_at), a.id)))
    chosen.sort(key=lambda a: (parse_time(a.delivered_at), a.id))
    return chosen, failed, gave_up


async def redeliver_missed(engine: Engine, clients: GitHubClients, owner: str, hold: timedelta) -> PassResult:
    """Run one pass if this process gets the lease: list, choose, request redeliveries, log what happened."""
    if not await asyncio.to_thread(take_lease, engine, owner, hold):
        log.debug("redelivery.lease_held_elsewhere")
        return PassResult(ran=False)
    result = PassResult()
    items = await _list_recent(clients, utcnow() - LOOKBACK)
    result.listed = len(items)
    chosen, result.failed_events, result.skipped_gave_up = _choose(items)
    stored = await asyncio.to_thread(_stored, engine, [d.guid for d in chosen])
    result.skipped_stored = len(stored)
    gh = clients.app()
    for d in [d for d in chosen if d.guid not in stored][:MAX_REQUESTS_PER_PASS]:
        try:
            await call(gh.rest.apps.async_redeliver_webhook_delivery(d.id))
        except GitHubError as error:  # one refused request must not stop the others
            result.errors += 1
            log.warning("redelivery.request_failed", extra={
                "github_delivery_id": d.id, "delivery_id": d.guid, "event": d.event, "error": str(error)})
            continue
        result.requested.append(d.guid)
        log.info("redelivery.requested", extra={
            "github_delivery_id": d.id, "delivery_id": d.guid, "event": d.event, "action": d.action,
            "status_code": d.status_code, "installation_id": d.installation_id})
    log.info("redelivery.pass", extra={
        "listed": result.listed, "failed_events": result.failed_events, "requested": len(result.requested),
        "already_stored": result.skipped_stored, "given_up": result.skipped_gave_up, "errors": result.errors})
    return result


def process_owner() -> str:
    """Name this process in the lease row: its host and a random suffix."""
    return f"{socket.gethostname()[:60]}:{uuid.uuid4().hex[:8]}"


async def redeliver_forever(engine: Engine, clients: GitHubClients, interval: float, stop: asyncio.Event,
                            stats: RedeliveryStats) -> None:
    """Run a pass at once and then every ``interval`` seconds until ``stop`` is set (a pass under way is cancelled)."""
    owner = process_owner()
    # Held a little less than the interval, so the same process (or the next one) can take it on time.
    hold = timedelta(seconds=max(1.0, interval * 0.9))
    while not stop.is_set():
        work = asyncio.ensure_future(redeliver_missed(engine, clients, owner, hold))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # shutting down in the middle of a pass: GitHub keeps what we did not ask yet
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            break
        stopping.cancel()
        try:
            stats.add(work.result())
        except GitHubError as exc:
            stats.counts["pass_errors"] += 1
            log.warning("redelivery.pass_failed", extra={"error": str(exc)})
        except Exception:  # the loop must survive a bad pass
            stats.counts["pass_errors"] += 1
            log.exception("redelivery.pass_failed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
