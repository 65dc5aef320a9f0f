"""Alerts after a release become ``incident`` outcomes: Prometheus Alertmanager's webhook, attributed
to the release that was live in that environment when the alert started.

Alertmanager posts to ``POST /webhooks/alertmanager`` (see docs/outcomes.md for its configuration).
The web process only checks the bearer token and stores the notification in the inbox, like a
GitHub delivery; a worker attributes each alert here:

- the alert's labels name the repository (``repository`` or ``repo``, as ``owner/name``) and the
  environment (``environment`` or ``env``); an alert without both is not about a deployment;
- without a ``sha`` (or ``commit``) label the release is the one that went live last in that environment
  before the alert started, and no longer ago than ``GONOGO_ALERT_WINDOW_HOURS`` (a successful deployment
  status of a release gonogo let through, else gonogo's own approval);
- a ``sha`` label says which release, not whether to blame it: that release must have gone live in that
  environment within the same window before the alert started (a successful deployment status of it, or
  gonogo's approval). A short (7 or more hex digits) or uppercase label is read as the one commit gonogo
  gated in that repository that it can mean; a label that means none, or several, or is no commit id at all, is
  refused: logged and audited (kind ``alert_refused``, once per alert), and a malformed one is named in the
  intake's answer;
- an alert is dated from its ``startsAt``, but never later than the notification was received;
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

from github_app import audit
from github_app.db.models import Delivery, Deployment, Outcome
from github_app.features.outcomes import latest_release, let_through, outcomes_recorded, record_outcome
from github_app.routing import Context, Event, Router
from github_app.webhooks import ALERT_EVENT

log = logging.getLogger(__name__)

MAX_ALERTS = 1000  # alerts looked at per notification; Alertmanager's own default cap is lower
NOT_INCIDENTS = frozenset({"info", "none"})

router = Router()

_FRACTION = re.compile(r"(\.\d{6})\d+")
_SHA_LABEL = re.compile(r"[0-9a-f]{7,40}")
AMBIGUOUS_SHOWN = 5  # candidate commits named when a short sha label is refused as ambiguous


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


class Refused(str):
    """Why a ``sha`` label names no release (a refusal, logged, rather than an incident under a wrong id)."""


def malformed_sha_label(label: str) -> Refused | None:
    """Why a ``sha`` label cannot be a commit id at all (known from the label alone), or None."""
    if _SHA_LABEL.fullmatch(label.strip().lower()):
        return None
    return Refused(f"sha label {label!r} is not a commit id: give 7 to 40 hexadecimal digits, best the full "
                   "40-character sha")  # fmt: skip


def screen(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts of a notification refused whatever the database holds: those whose ``sha`` label is malformed.

    The intake names them in its answer. Whether a well-formed label names a release (none, or several) is
    known only to the worker that attributes the alert; it records those refusals in the audit log.
    """
    alerts = payload.get("alerts")
    refused: list[dict[str, Any]] = []
    for index, raw in enumerate(alerts[:MAX_ALERTS] if isinstance(alerts, list) else []):
        alert = read_alert(raw)
        if isinstance(alert, str) or alert.sha is None:
            continue
        problem = malformed_sha_label(alert.sha)
        if problem is not None:
            refused.append({"index": index, **_refusal(raw, alert, problem)})
    return refused


def _refusal(raw: dict[str, Any], alert: Alert, reason: str) -> dict[str, Any]:
    """What names a refused alert and why, for the intake's answer and the audit log."""
    fingerprint = raw.get("fingerprint")
    return {
        "alertname": _mapping(raw.get("labels")).get("alertname"),
        "fingerprint": fingerprint if isinstance(fingerprint, str) else None, "environment": alert.environment,
        "starts_at": alert.started.isoformat(), "sha_label": alert.sha, "reason": reason,
    }  # fmt: skip


def record_refusal(engine: Engine, raw: dict[str, Any], alert: Alert, reason: str, at: datetime,
                   delivery_id: str | None) -> bool:  # fmt: skip
    """Audit a refused alert (kind ``alert_refused``) once, however often Alertmanager repeats it; True if new.

    Any earlier record of the alert was written after it was received, so no earlier than it started (``at``,
    already clamped to a receipt), give or take clock skew: a day's margin bounds the look-back.
    """
    with engine.begin() as conn:
        entry = audit.append_once(
            conn, "alert_refused", alert.key, since=at - timedelta(days=1), repository=alert.repository,
            actor="alertmanager", data={**_refusal(raw, alert, reason), "delivery_id": delivery_id},
        )  # fmt: skip
    return entry is not None


def resolve_sha_label(engine: Engine, repository: str, label: str) -> str | Refused:
    """The full sha a ``sha`` label means: itself when it is one, else the one commit gonogo gated it can mean.

    GitHub's commit ids are 40 lowercase hex digits, and history rows are kept under those. A label in capitals
    is lowered; a shorter one (7 or more digits, as ``git rev-parse --short`` prints) must be the prefix of
    exactly one commit among gonogo's deployments of the repository: one that fits several, or none, names no
    release.
    """
    value = label.strip().lower()
    malformed = malformed_sha_label(label)
    if malformed is not None:
        return malformed
    if len(value) == 40:
        return value
    with engine.connect() as conn:
        # hex digits only, so the prefix needs no LIKE escaping
        candidates = list(conn.execute(
            select(Deployment.sha).where(Deployment.repository == repository, Deployment.sha.startswith(value))
            .distinct().order_by(Deployment.sha).limit(AMBIGUOUS_SHOWN + 1)
        ).scalars())  # fmt: skip
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return Refused(f"sha label {label!r} matches no release gonogo gated in {repository}: label the alert "
                       "with the full 40-character sha of the release")  # fmt: skip
    count = f"{AMBIGUOUS_SHOWN}+" if len(candidates) > AMBIGUOUS_SHOWN else str(len(candidates))
    shown = ", ".join(c[:12] for c in candidates[:AMBIGUOUS_SHOWN])
    return Refused(f"sha label {label!r} matches {count} releases of {repository} ({shown}): label the alert "
                   "with the full 40-character sha")  # fmt: skip


def went_live(engine: Engine, repository: str, environment: str, sha: str, at: datetime, window: timedelta) -> bool:
    """Whether ``sha`` went live in this environment within ``window`` before ``at``.

    Live means a successful deployment status of that commit there, or gonogo's approval of it. Any success
    status counts here (unlike in ``live_release``): the label, not the status, says which release is blamed,
    and a release deployed around the gate fails like any other.
    """
    with engine.connect() as conn:
        deployed = conn.execute(
            select(Outcome.id).where(
                Outcome.repository == repository, Outcome.environment == environment, Outcome.sha == sha,
                Outcome.outcome == "success", Outcome.source == "deployment_status",
                Outcome.observed_at <= at, Outcome.observed_at >= at - window,
            ).limit(1)
        ).first()  # fmt: skip
        if deployed is not None:
            return True
        approved = conn.execute(
            select(Deployment.id).where(
                Deployment.repository == repository, Deployment.environment == environment, Deployment.sha == sha,
                Deployment.answer == "approved", Deployment.answered_at <= at, Deployment.answered_at >= at - window,
            ).limit(1)
        ).first()  # fmt: skip
    return approved is not None


def attribute(engine: Engine, alert: Alert, at: datetime, window: timedelta) -> str | Refused | None:
    """The sha of the release an alert starting at ``at`` is blamed on; a refusal of its sha label; or None."""
    if alert.sha is None:
        return live_release(engine, alert.repository, alert.environment, at, window)
    sha = resolve_sha_label(engine, alert.repository, alert.sha)
    if isinstance(sha, Refused):
        return sha
    # the label says which release, not whether to blame it: the window bounds it like any other alert
    return sha if went_live(engine, alert.repository, alert.environment, sha, at, window) else None


def record_alerts(
    engine: Engine, payload: dict[str, Any], window: timedelta, received: datetime | None = None,
    delivery_id: str | None = None,
) -> tuple[set[str], int]:
    """Record an incident for every attributable alert; return the repositories touched and how many were new.

    ``received`` is when the notification reached gonogo: no alert is dated later than that. An alert whose
    ``sha`` label names no release is refused: logged, and audited once (``record_refusal``).
    """
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        return set(), 0
    received = received or datetime.now(UTC)
    touched: set[str] = set()
    new = 0
    for raw in alerts[:MAX_ALERTS]:
        alert = read_alert(raw)
        name = _mapping(raw.get("labels")).get("alertname") if isinstance(raw, dict) else None
        if isinstance(alert, str):
            log.info("alert.ignored", extra={"alertname": name, "reason": alert})
            continue
        where = {"alertname": name, "repository": alert.repository, "environment": alert.environment}
        # a startsAt ahead of the receipt (a skewed clock) would date the incident in the future: hidden from the
        # features of every release gated until then, and looked up against releases not yet live
        at = min(alert.started, received)
        if at < alert.started:
            log.info("alert.dated_at_receipt", extra={**where, "starts_at": alert.started.isoformat()})
        sha = attribute(engine, alert, at, window)
        if isinstance(sha, Refused):
            log.warning("alert.refused", extra={**where, "alert_label": alert.sha, "reason": str(sha)})
            record_refusal(engine, raw, alert, str(sha), at, delivery_id)
            continue
        if sha is None:
            log.info("alert.unattributed", extra={**where, "alert_label": alert.sha})
            continue
        detail = dict(alert.detail)
        if alert.sha is not None and alert.sha != sha:
            detail["sha_label"] = alert.sha  # as the alert gave it, before it was resolved
        if at < alert.started:
            detail["starts_at"] = alert.started.isoformat()
        if record_outcome(
            engine, repository=alert.repository, environment=alert.environment, sha=sha, outcome="incident",
            source="alert", source_key=alert.key, observed_at=at, detail=detail,
        ):  # fmt: skip
            new += 1
            touched.add(alert.repository)
    return touched, new


def received_at(engine: Engine, delivery_id: str) -> datetime | None:
    """When the inbox took the notification in."""
    with engine.connect() as conn:
        return conn.execute(select(Delivery.received_at).where(Delivery.delivery_id == delivery_id)).scalar()


@router.on(ALERT_EVENT)
async def on_alertmanager(ctx: Context, ev: Event) -> None:
    window = timedelta(hours=ctx.settings.alert_window_hours)
    received = await asyncio.to_thread(received_at, ctx.engine, ev.delivery_id)
    touched, _ = await asyncio.to_thread(record_alerts, ctx.engine, ev.payload, window, received, ev.delivery_id)
    await outcomes_recorded(ctx, *sorted(touched))
