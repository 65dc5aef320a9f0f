"""``GET /metrics``: the inbox and outbox at a glance, as JSON or in Prometheus' text format.

A Prometheus scraper asks for ``text/plain`` or OpenMetrics in its Accept header and gets the
text exposition format (version 0.0.4); anything else, a browser or ``curl``, gets JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select

from github_app import audit, inbox, jobs, notify
from github_app.db.models import Delivery

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTBOX_STATES = ("pending", "sending", "sent", "dead")
REFUSED_ALERTS_SPAN = timedelta(days=1)


@dataclass
class Snapshot:
    deliveries: dict[str, int]
    oldest_due_seconds: float  # how long the longest-waiting due delivery has waited; 0 when none waits
    notifications: dict[str, int]
    rejected: dict[str, int] = field(default_factory=dict)  # this process's refusals by reason
    processed: int = 0  # deliveries this process's workers finished
    previous_secret: int = 0  # deliveries accepted with GONOGO_WEBHOOK_SECRET_PREVIOUS
    audit_head: tuple[int, str] | None = None  # newest audit entry (seq, hash): a drop in seq means truncation
    redelivery: dict[str, int] = field(default_factory=dict)  # this process's redelivery passes and requests
    alerts_refused_last_day: int = 0  # alerts refused in the last day, any process (audit kind alert_refused)


def take(
    engine: Engine, rejected: Mapping[str, int], processed: int, previous_secret: int = 0, now: datetime | None = None,
    *, redelivery: Mapping[str, int] | None = None,
) -> Snapshot:
    """Read the figures from the database (small queries; the due one uses the claim index, the refused alerts a
    day of the audit log's time index)."""
    now = now or jobs.utcnow()
    with engine.connect() as conn:
        oldest = conn.execute(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == "pending", Delivery.next_attempt_at <= now
            )
        ).scalar()
    deliveries = dict.fromkeys(inbox.STATES, 0) | inbox.count_by_state(engine)
    notifications = dict.fromkeys(OUTBOX_STATES, 0) | notify.counts(engine)
    waited = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    refused = audit.count_since(engine, "alert_refused", now - REFUSED_ALERTS_SPAN)
    return Snapshot(deliveries, waited, notifications, dict(rejected), processed, previous_secret, audit.head(engine),
                    dict(redelivery or {}), refused)


def as_json(s: Snapshot) -> dict[str, object]:
    return {
        "deliveries": s.deliveries,
        "oldest_due_delivery_seconds": round(s.oldest_due_seconds, 3),
        "notifications": s.notifications,
        "rejected": s.rejected,
        "processed": s.processed,
        "previous_secret": s.previous_secret,
        "audit_head": {"seq": s.audit_head[0], "hash": s.audit_head[1]} if s.audit_head else None,
        "redelivery": s.redelivery,
        "alerts_refused_last_day": s.alerts_refused_last_day,
    }


def wants_prometheus(accept: str, fmt: str | None) -> bool:
    """True for ``?format=prometheus`` or an Accept header naming text/plain or OpenMetrics."""
    if fmt is not None:
        return fmt.lower() in {"prometheus", "text", "openmetrics"}
    accept = accept.lower()
    return "text/plain" in accept or "application/openmetrics-text" in accept


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def as_prometheus(s: Snapshot) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value:g}")

    family("gonogo_deliveries", "gauge", "Webhook deliveries in the inbox, by state.",
           [(f'{{state="{_label(k)}"}}', v) for k, v in sorted(s.deliveries.items())])  # fmt: skip
    family("gonogo_oldest_due_delivery_seconds", "gauge",
           "How long the longest-waiting due delivery has waited for a worker (0 when none waits).",
           [("", round(s.oldest_due_seconds, 3))])  # fmt: skip
    family("gonogo_notifications", "gauge", "Notification messages in the outbox, by state.",
           [(f'{{state="{_label(k)}"}}', v) for k, v in sorted(s.notifications.items())])  # fmt: skip
    family("gonogo_webhooks_rejected_total", "counter", "Webhook requests this process refused, by reason.",
           [(f'{{reason="{_label(k)}"}}', v) for k, v in sorted(s.rejected.items())])  # fmt: skip
    family("gonogo_deliveries_processed_total", "counter", "Deliveries this process's workers finished.",
           [("", s.processed)])  # fmt: skip
    family("gonogo_webhooks_previous_secret_total", "counter",
           "Deliveries accepted with the previous webhook secret (GONOGO_WEBHOOK_SECRET_PREVIOUS).",
           [("", s.previous_secret)])  # fmt: skip
    # The seq only, not the hash as a label: a label that changes with every entry would make a new series each time.
    family("gonogo_audit_head_seq", "gauge",
           "Seq of the newest audit log entry; it only grows, so a drop means entries were cut from the end.",
           [("", s.audit_head[0] if s.audit_head else 0)])  # fmt: skip
    family("gonogo_redelivery_total", "counter",
           "Missed-webhook recovery in this process: passes run, passes left to another process (passes_skipped), "
           "redeliveries requested, requests GitHub refused (request_errors), passes that failed (pass_errors).",
           [(f'{{what="{_label(k)}"}}', v) for k, v in sorted(s.redelivery.items())])  # fmt: skip
    family("gonogo_alerts_refused_last_day", "gauge",
           "Alertmanager alerts refused in the last 24 hours because their sha label names no release "
           "(audit kind alert_refused: the entries say which and why).",
           [("", s.alerts_refused_last_day)])  # fmt: skip
    return "\n".join(lines) + "\n"
