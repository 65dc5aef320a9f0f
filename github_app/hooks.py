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
    """Audit the decision inside the transaction that stores it."""


async def emit(ctx: Context, event: str, **details: Any) -> None:
    """Tell the features around the gate that something happened to a deployment."""
