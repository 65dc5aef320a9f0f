"""Alerts after a release become ``incident`` outcomes: Prometheus Alertmanager's webhook, attributed
to the release that was live in that environment when the alert started.

Alertmanager posts to ``POST /webhooks/alertmanager`` (see docs/outcomes.md for its configuration).
The web process only checks the bearer token and stores the notification in the inbox, like a
GitHub delivery; a worker attributes each alert here:

- the alert's labels name the repository (``repository`` or ``repo``, as ``owner/name``) and the
  environment (``environment`` or ``env``); an alert without both is not about a deployment;
- a ``sha`` (or ``commit``) label names the release outright; otherwise it is the release that
  went live last in that environment before the alert started, and no longer ago than
  ``GONOGO_ALERT_WINDOW_HOURS`` (a successful deployment status of a release gonogo let through, else
  gonogo's own approval);
- alerts with ``severity`` ``info`` or ``none`` are not incidents.

Each alert counts once however often Alertmanager repeats it (by fingerprint and start time).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from github_app.db.models import Outcome
from github_app.features.outcomes import latest_release, let_through, outcomes_recorded, record_outcome
from github_app.routing import Context, Event, Router
from github_app.webhooks import ALERT_EVENT

log = logging.getLogger(__name__)

MAX_ALERTS = 1000  # alerts looked at per notification; Alertmanager's own default cap is lower
NOT_INCIDENTS = frozenset({"info", "none"})

router = Router()

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_alert_time(value: object) -> datetime | None:
    """Alertmanager's RFC 3339 times (Go prints up to nanoseconds, and a zero time for "unset")."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        when = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()))
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Alert:
    repository: str
    environment: str
    sha: str | None
    started: datetime
    key: str  # the idempotency key of this alert's outcome
    detail: dict[str, Any]


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _label(labels: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = labels.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def read_alert(raw: object) -> Alert | str:
    """The alert, or the reason it is not about a deployment."""
    if not isinstance(raw, dict):
        return "not an object"
    labels = _mapping(raw.get("labels"))
    annotations = _mapping(raw.get("annotations"))
    repository = _label(labels, "repository", "repo")
    environment = _label(labels, "environment", "env")
    if not repository or "/" not in repository or not environment:
        return "no repository (owner/name) and environment labels"
    sha = _label(labels, "sha", "commit")
    if len(repository) > 200 or len(environment) > 200 or (sha is not None and len(sha) > 64):
        return "repository, environment or sha label too long"
    severity = (_label(labels, "severity") or "").lower()
    if severity in NOT_INCIDENTS:
        return f"severity {severity}"
    started = parse_alert_time(raw.get("startsAt"))
    if started is None:
        return "no startsAt"
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:  # older Alertmanagers: the labels identify the alert
        fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    detail = {
        "alertname": labels.get("alertname"), "severity": severity or None, "status": raw.get("status"),
        "summary": str(annotations.get("summary") or annotations.get("description") or "")[:500] or None,
        "generator_url": raw.get("generatorURL") if isinstance(raw.get("generatorURL"), str) else None,
    }  # fmt: skip
    return Alert(
        repository=repository, environment=environment, sha=sha, started=started,
        key=f"alert:{fingerprint[:64]}:{started.isoformat()}", detail=detail,
    )  # fmt: skip


def live_release(engine: Engine, repository: str, environment: str, at: datetime, window: timedelta) -> str | None:
    """The sha that went live last in this environment within ``window`` before ``at``.

    Only a release gonogo let through can be live: a success status the deployer posts for any other commit
    would otherwise take the alert off the release that was really running.
    """
    with engine.connect() as conn:
        deployed = conn.execute(
            select(Outcome.sha).where(
                Outcome.repository == repository, Outcome.environment == environment, Outcome.outcome == "success",
                Outcome.source == "deployment_status", Outcome.observed_at <= at, Outcome.observed_at >= at - window,
                let_through(),
            ).order_by(Outcome.observed_at.desc()).limit(1)
        ).scalar()  # fmt: skip
    return deployed or latest_release(engine, repository, environment, at, window)


def record_alerts(engine: Engine, payload: dict[str, Any], window: timedelta) -> tuple[set[str], int]:
    """Record an incident for every attributable alert; return the repositories touched and how many were new."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        return set(), 0
    touched: set[str] = set()
    new = 0
    for raw in alerts[:MAX_ALERTS]:
        alert = read_alert(raw)
        name = _mapping(raw.get("labels")).get("alertname") if isinstance(raw, dict) else None
        if isinstance(alert, str):
            log.info("alert.ignored", extra={"alertname": name, "reason": alert})
            continue
        sha = alert.sha or live_release(engine, alert.repository, alert.environment, alert.started, window)
        if sha is None:
            log.info("alert.unattributed", extra={"alertname": name, "repository": alert.repository,
                                                  "environment": alert.environment})  # fmt: skip
            continue
        if record_outcome(
            engine, repository=alert.repository, environment=alert.environment, sha=sha, outcome="incident",
            source="alert", source_key=alert.key, observed_at=alert.started, detail=alert.detail,
        ):  # fmt: skip
            new += 1
            touched.add(alert.repository)
    return touched, new


@router.on(ALERT_EVENT)
async def on_alertmanager(ctx: Context, ev: Event) -> None:
    window = timedelta(hours=ctx.settings.alert_window_hours)
    touched, _ = await asyncio.to_thread(record_alerts, ctx.engine, ev.payload, window)
    await outcomes_recorded(ctx, *sorted(touched))
