"""Read-only views of what gonogo decided, shared by `gonogo deployments` and the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from github_app.db.models import DecisionRecord, Deployment, Outcome, Review

STATES = ("evaluating", "escalated", "answered", "expired")


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
            DecisionRecord.verdict, DecisionRecord.action, DecisionRecord.readiness_score, DecisionRecord.risk,
            DecisionRecord.confidence, DecisionRecord.data["reviewers"].label("reviewers"),
            DecisionRecord.data[("strategy", "name")].label("strategy"),
        )
        .outerjoin(DecisionRecord, DecisionRecord.id == Deployment.decision_id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(limit)
    )  # fmt: skip
    if state:
        stmt = stmt.where(Deployment.state == state)
    if repository:
        stmt = stmt.where(Deployment.repository == repository)
    if environment:
        stmt = stmt.where(Deployment.environment == environment)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        reviewers = r.reviewers if isinstance(r.reviewers, dict) else {}
        out.append({
            "key": r.key, "repository": r.repository, "environment": r.environment, "run_id": r.run_id, "sha": r.sha,
            "state": r.state, "answer": r.answer, "created_at": r.created_at, "answered_at": r.answered_at,
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
    return {
        "key": row.key, "repository": row.repository, "environment": row.environment, "sha": row.sha,
        "ref": row.ref, "run_id": row.run_id, "creator": row.creator, "state": row.state, "answer": row.answer,
        "answer_comment": row.answer_comment, "created_at": row.created_at, "answered_at": row.answered_at,
        "decision": decision,
        "reviews": [r._asdict() for r in reviews],
        "outcomes": [o._asdict() for o in outcomes],
    }  # fmt: skip
