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
    return []


def record_decision(session: Session, row: Any, decision: Decision, policy_sha: str | None) -> None:
    """Add the deployment to the history table (and audit it) inside the transaction that stores it."""
    from sqlalchemy import select

    from github_app.db.models import HistoryRow

    features = decision.evidence.to_history_row()
    for key in ("deployment_id", "repository", "environment", "sha", "created_at", "outcome"):
        features.pop(key, None)
    existing = session.scalar(select(HistoryRow).where(HistoryRow.deployment_id == row.key))
    if existing is None:
        session.add(HistoryRow(
            deployment_id=row.key, repository=row.repository, environment=row.environment, sha=row.sha,
            created_at=row.created_at, features=features,
        ))  # fmt: skip
    else:
        existing.features = features


async def emit(ctx: Context, event: str, **details: Any) -> None:
    """Tell the features around the gate that something happened to a deployment."""
