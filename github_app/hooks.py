"""Where the gate meets the features around it: risk model, waivers, audit trail, escalation, notifications.

The gate calls these few functions; each one composes the feature modules explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.orm import Session

from github_app.routing import Context
from rules.types import Decision, Waiver
from scorer.assessment import RiskEstimate
from scorer.evidence import Evidence

log = logging.getLogger(__name__)


async def risk_for(ctx: Context, evidence: Evidence) -> RiskEstimate | None:
    """The active risk model's estimate, or None to use the transparent rule-based one."""
    provider = ctx.services.get("risk")
    if provider is None:
        return None
    try:
        return await asyncio.to_thread(provider.estimate, evidence)
    except Exception:  # a broken model must never block a decision: fall back to the rule-based estimate
        log.exception("risk.model_failed", extra={"deployment": evidence.deployment_id})
        return None


async def waivers_for(ctx: Context, target: Any) -> list[Waiver]:
    """Active waivers for the target's repository, environment and sha."""
    from datetime import UTC, datetime

    from github_app import waivers
    from github_app.db import read_only

    def read(now: datetime) -> list[Waiver]:
        with read_only(ctx.engine) as conn:
            return waivers.active_waivers(conn, target.repository, target.environment, target.sha, now)

    return await asyncio.to_thread(read, datetime.now(UTC))


def record_decision(
    session: Session, row: Any, decision: Decision, policy_sha: str | None, env_policy: Any = None
) -> bool:
    """Add the deployment to the history table (and audit it) inside the transaction that stores it.

    Returns whether notifications were queued in the outbox.
    """
    from github_app.db import insert_for
    from github_app.db.models import HistoryRow

    features = decision.evidence.to_history_row()
    for key in ("deployment_id", "repository", "environment", "sha", "created_at", "outcome"):
        features.pop(key, None)
    # one statement whether or not an earlier decision (a re-evaluation) already added the row
    upsert = insert_for(session.get_bind())(HistoryRow).values(
        deployment_id=row.key, repository=row.repository, environment=row.environment, sha=row.sha,
        created_at=row.created_at, features=features,
    )  # fmt: skip
    session.execute(upsert.on_conflict_do_update(
        index_elements=[HistoryRow.deployment_id], set_={"features": upsert.excluded.features},
    ))  # fmt: skip
    from github_app import audit

    audit.append_decision(
        session, decision, deployment_key=row.key, policy_sha=policy_sha,
        effective_policy=env_policy.model_dump(mode="json") if env_policy is not None else None,
    )  # fmt: skip
    if env_policy is not None:
        from github_app.features.escalation import notify_state_change

        event = {"approve": "approved", "reject": "rejected"}.get(decision.action, "escalated")
        channels = list(env_policy.notifications)
        notify_state_change(session, row, event, channels, decision=decision)
        return bool(channels)
    return False


async def emit(ctx: Context, event: str, *, queued: bool = False, **details: Any) -> None:
    """Tell the features around the gate that something happened to a deployment.

    ``queued``: the step stored outbox messages, so the dispatcher is woken to deliver them now (otherwise
    its next poll would; waking it for nothing costs it a claim and a look-up in the database).
    """
    dispatcher = ctx.services.get("outbox")
    if dispatcher is not None and queued:
        dispatcher.wake()
    if event == "escalated":
        from github_app.features.escalation import announce_escalation

        await announce_escalation(ctx, details["row"], details["decision"], details["target"])
