"""Read-only views of what gonogo decided, shared by `gonogo deployments` and the dashboard."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from github_app.db.models import DecisionRecord, Delivery, Deployment, Outcome, Review

# "failed" is not a state of the row: it is an evaluating deployment whose delivery went dead
STATES = ("evaluating", "escalated", "answered", "expired", "failed")
DEAD_DELIVERIES_READ = 1000  # dead deliveries wait for a person; more than this many is a backlog to fix first


def dead_gate_deliveries(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    """Map (callback URL, environment) to the newest dead protection-rule delivery of that deployment.

    A delivery goes dead when gonogo gave up on it (a permanent error, or too many failed attempts);
    its deployment then stays "evaluating" for good unless someone fixes the cause and retries it.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.id, Delivery.delivery_id, Delivery.payload, Delivery.last_error, Delivery.completed_at)
            .where(Delivery.state == "dead", Delivery.event == "deployment_protection_rule")
            .order_by(Delivery.id.desc()).limit(DEAD_DELIVERIES_READ)
        ).all()  # fmt: skip
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        try:
            payload = json.loads(r.payload)
            key = (str(payload["deployment_callback_url"]), str(payload["environment"]))
        except (ValueError, KeyError, TypeError):
            continue  # a payload that names no deployment has no deployment row either
        error = (r.last_error or "unknown error").strip().splitlines()[0]
        found.setdefault(key, {"delivery": r.id, "delivery_id": r.delivery_id, "error": error,
                               "failed_at": r.completed_at, "retry": f"gonogo deliveries retry {r.id}"})
    return found


def _failure(dead: dict[tuple[str, str], dict[str, Any]], state: str, has_decision: bool, callback_url: str | None,
             environment: str) -> dict[str, Any] | None:
    if state != "evaluating" or has_decision or not callback_url:
        return None
    return dead.get((callback_url, environment))


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_deployments(
    engine: Engine, *, state: str | None = None, repository: str | None = None, environment: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest deployments with their decision's headline figures (and reviewers while escalated)."""
    stmt = (
        select(
            Deployment.key, Deployment.repository, Deployment.environment, Deployment.run_id, Deployment.sha,
            Deployment.state, Deployment.answer, Deployment.created_at, Deployment.answered_at,
            Deployment.callback_url, DecisionRecord.verdict, DecisionRecord.action, DecisionRecord.readiness_score, DecisionRecord.risk,
            DecisionRecord.confidence, DecisionRecord.data["reviewers"].label("reviewers"),
            DecisionRecord.data[("strategy", "name")].label("strategy"),
        )
        .outerjoin(DecisionRecord, DecisionRecord.id == Deployment.decision_id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(limit)
    )  # fmt: skip
    if state:
        stmt = stmt.where(Deployment.state == ("evaluating" if state == "failed" else state))
    if repository:
        stmt = stmt.where(Deployment.repository == repository)
    if environment:
        stmt = stmt.where(Deployment.environment == environment)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    dead = dead_gate_deliveries(engine) if any(r.state == "evaluating" for r in rows) else {}
    out = []
    for r in rows:
        reviewers = r.reviewers if isinstance(r.reviewers, dict) else {}
        failure = _failure(dead, r.state, r.verdict is not None, r.callback_url, r.environment)
        if state in ("evaluating", "failed") and (failure is not None) != (state == "failed"):
            continue
        out.append({
            "key": r.key, "repository": r.repository, "environment": r.environment, "run_id": r.run_id, "sha": r.sha,
            "state": "failed" if failure else r.state, "failure": failure, "answer": r.answer, "created_at": r.created_at, "answered_at": r.answered_at,
            "verdict": r.verdict, "action": r.action, "readiness_score": r.readiness_score, "risk": r.risk,
            "confidence": r.confidence, "strategy": r.strategy,
            "reviewers": [*reviewers.get("users", []), *(f"@{t}" for t in reviewers.get("teams", []))],
        })  # fmt: skip
    return out


def find_deployment(engine: Engine, ref: str) -> Deployment | None:
    """A deployment by its key, its row id, or ``owner/name#run`` (the newest attempt and environment)."""
    cond = Deployment.key == ref
    if ref.isdigit():
        cond = or_(cond, Deployment.id == int(ref))
    repository, _, run = ref.partition("#")
    if run.isdigit():
        cond = or_(cond, (Deployment.repository == repository) & (Deployment.run_id == int(run)))
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(select(Deployment).where(cond).order_by(Deployment.created_at.desc()).limit(1)).first()


def deployment_detail(engine: Engine, row: Deployment) -> dict[str, Any]:
    """Everything recorded about one deployment: the decision, the reviews, the outcomes."""
    with engine.connect() as conn:
        decision = conn.execute(select(DecisionRecord.data).where(DecisionRecord.id == row.decision_id)).scalar()
        reviews = conn.execute(
            select(Review.actor, Review.action, Review.allowed, Review.reason, Review.refusal, Review.created_at)
            .where(Review.deployment_id == row.id).order_by(Review.created_at)
        ).all()  # fmt: skip
        outcomes = conn.execute(
            select(Outcome.outcome, Outcome.source, Outcome.observed_at, Outcome.detail)
            .where(Outcome.repository == row.repository, Outcome.environment == row.environment,
                   Outcome.sha == row.sha)
            .order_by(Outcome.observed_at)
        ).all()  # fmt: skip
    failure = _failure(dead_gate_deliveries(engine), row.state, decision is not None, row.callback_url, row.environment)
    return {
        "key": row.key, "repository": row.repository, "environment": row.environment, "sha": row.sha,
        "ref": row.ref, "run_id": row.run_id, "creator": row.creator, "state": "failed" if failure else row.state,
        "failure": failure, "answer": row.answer,
        "answer_comment": row.answer_comment, "created_at": row.created_at, "answered_at": row.answered_at,
        "decision": decision,
        "reviews": [r._asdict() for r in reviews],
        "outcomes": [o._asdict() for o in outcomes],
    }  # fmt: skip
