"""Pages of deployments for the API and the dashboard: filters, cursor pagination, one deployment in full.

A cursor is the (created_at, id) of the last row of a page, so the next page is an index range scan
whatever the table's size, and rows arriving meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, false, func, or_, select

from github_app import views
from github_app.db import read_only
from github_app.db.models import AuditEntry, DecisionRecord, Deployment

MAX_LIMIT = 200
MAX_ID = 2**63 - 1  # row ids are 64-bit: a larger one names no row, and the database refuses to compare it


class CursorError(ValueError):
    """A cursor this server did not hand out."""


class FilterError(ValueError):
    """A filter value no stored row can have."""


def check_filter_text(name: str, value: str | None) -> None:
    """Refuse a filter with a NUL character: no name holds one, and PostgreSQL refuses to compare it."""
    if value is not None and "\x00" in value:
        raise FilterError(f"{name} contains a NUL character; no {name} does")


@dataclass(frozen=True)
class Filters:
    repository: str | None = None
    environment: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: str | None = None
    waiting: bool = False  # escalated, no answer yet, not abandoned

    def __post_init__(self) -> None:
        for name in ("repository", "environment", "state"):
            check_filter_text(name, getattr(self, name))


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor stands for; CursorError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = json.loads(raw)
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None or not isinstance(row_id, int) or not 0 <= row_id <= MAX_ID:
            raise ValueError("cursor fields")
        return when, row_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CursorError("cursor is not valid: pass the next_cursor of the previous page unchanged") from exc


def _row(r: Any, dead: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    reviewers = r.reviewers if isinstance(r.reviewers, dict) else {}
    strategy = r.strategy if isinstance(r.strategy, str) else None
    failed = r.state == "evaluating" and r.verdict is None and (r.callback_url, r.environment) in dead
    return {
        "id": r.id, "key": r.key, "repository": r.repository, "environment": r.environment, "run_id": r.run_id,
        "sha": r.sha, "ref": r.ref, "creator": r.creator, "state": "failed" if failed else r.state, "answer": r.answer,
        "created_at": r.created_at.astimezone(UTC), "answered_at": r.answered_at.astimezone(UTC) if r.answered_at else None,
        "verdict": r.verdict, "action": r.action, "readiness_score": r.readiness_score, "risk": r.risk,
        "confidence": r.confidence, "strategy": strategy,
        "reviewers": [*reviewers.get("users", []), *(f"@{t}" for t in reviewers.get("teams", []))],
    }  # fmt: skip


def page(engine: Engine, filters: Filters, *, limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The newest deployments matching ``filters`` after ``cursor``, and the cursor of the next page."""
    limit = max(1, min(limit, MAX_LIMIT))
    stmt = (
        select(
            Deployment.id, Deployment.key, Deployment.repository, Deployment.environment, Deployment.run_id,
            Deployment.sha, Deployment.ref, Deployment.creator, Deployment.state, Deployment.answer,
            Deployment.created_at, Deployment.answered_at, Deployment.callback_url, DecisionRecord.verdict,
            DecisionRecord.action,
            DecisionRecord.readiness_score, DecisionRecord.risk, DecisionRecord.confidence,
            DecisionRecord.data["reviewers"].label("reviewers"),
            DecisionRecord.data[("strategy", "name")].label("strategy"),
        )
        .outerjoin(DecisionRecord, DecisionRecord.id == Deployment.decision_id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(limit + 1)
    )  # fmt: skip
    if filters.repository:
        stmt = stmt.where(Deployment.repository == filters.repository)
    if filters.environment:
        stmt = stmt.where(Deployment.environment == filters.environment)
    if filters.since:
        stmt = stmt.where(Deployment.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(Deployment.created_at < filters.until)
    # "failed" is no stored state: an evaluating deployment with no decision whose delivery went dead (views.STATES);
    # the dead deliveries are read only when a filter or a row needs them
    dead: dict[tuple[str, str], dict[str, Any]] | None = None
    if filters.state in ("failed", "evaluating"):
        dead = views.dead_gate_deliveries(engine)
        failed = and_(Deployment.state == "evaluating", Deployment.decision_id.is_(None), or_(false(), *(
            and_(Deployment.callback_url == url, Deployment.environment == env) for url, env in dead)))  # fmt: skip
        stmt = stmt.where(failed if filters.state == "failed" else and_(Deployment.state == "evaluating", ~failed))
    elif filters.state:
        stmt = stmt.where(Deployment.state == filters.state)
    if filters.waiting:
        # an abandoned escalation (its run ended, or a re-run took its place) waits for nobody
        stmt = stmt.where(DecisionRecord.action == "escalate", Deployment.answer.is_(None),
                          Deployment.state != "abandoned")  # fmt: skip
    if cursor:
        at, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(Deployment.created_at < at, and_(Deployment.created_at == at, Deployment.id < row_id)))
    with read_only(engine) as conn:
        found = conn.execute(stmt).all()
    if dead is None and any(r.state == "evaluating" and r.verdict is None for r in found):
        dead = views.dead_gate_deliveries(engine)
    rows = [_row(r, dead or {}) for r in found]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None


def choices(engine: Engine) -> tuple[list[str], list[str]]:
    """The repositories and environments gonogo has seen, for filter menus (the first 500 of each, sorted)."""
    with read_only(engine) as conn:
        repos, envs = (list(conn.execute(_distinct(column)).scalars())
                       for column in (Deployment.repository, Deployment.environment))  # fmt: skip
        return repos, envs


def _distinct(column: Any, limit: int = 500) -> Any:
    """The distinct values of an indexed column, one index probe per value (a loose index scan).

    ``SELECT DISTINCT`` reads every deployment ever recorded (0.1 s at 100,000); stepping from one
    value to the next through the index (ix_deployments_env, ix_deployments_env_only) reads a few
    entries per value, whatever the history's size.
    """
    first = select(func.min(column).label("v"))
    steps = first.cte("steps", recursive=True)
    following = select(select(func.min(column)).where(column > steps.c.v).scalar_subquery()).where(steps.c.v.is_not(None))
    steps = steps.union_all(following)
    return select(steps.c.v).where(steps.c.v.is_not(None)).order_by(steps.c.v).limit(limit)


def detail(engine: Engine, row_id: int) -> dict[str, Any] | None:
    """One deployment with everything recorded about it, its audit entries included; None if unknown."""
    if not 0 < row_id <= MAX_ID:
        return None
    with read_only(engine) as conn:
        found = conn.execute(select(Deployment.key).where(Deployment.id == row_id)).scalar()
    if found is None:
        return None
    row = views.find_deployment(engine, found)
    if row is None:
        return None
    out = views.deployment_detail(engine, row)
    with read_only(engine) as conn:
        entries = conn.execute(
            select(AuditEntry.seq, AuditEntry.created_at, AuditEntry.kind, AuditEntry.actor, AuditEntry.data)
            .where(AuditEntry.deployment_key == row.key).order_by(AuditEntry.seq).limit(500)
        ).all()  # fmt: skip
    out["id"] = row.id
    out["audit"] = [e._asdict() for e in entries]
    return out
