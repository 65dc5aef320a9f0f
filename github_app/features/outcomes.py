"""Deployment outcomes flow back in: deployment statuses, rollbacks and alerts become training labels."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, literal, or_, select, update

from github_app import db
from github_app.db.models import Deployment, HistoryRow, Outcome, UTCDateTime
from github_app.github import parse_time
from github_app.routing import Context, Event, Router
from scorer.evidence import FAILED_OUTCOMES

log = logging.getLogger(__name__)

router = Router()

STATE_TO_OUTCOME = {"success": "success", "failure": "failure", "error": "failure"}


def record_outcome(
    engine: Engine, *, repository: str, environment: str, sha: str, outcome: str, source: str, source_key: str,
    observed_at: datetime, detail: dict[str, Any] | None = None, github_deployment_id: int | None = None,
    deployment_key: str | None = None,
) -> bool:
    """Store one outcome (idempotent by ``source_key``) and label the matching history row; True if new.

    The row is the release the outcome names: gonogo's own deployment (``deployment_key``, or the GitHub
    deployment ``github_deployment_id`` when gonogo gated it) when the source says which; otherwise the
    newest row of the commit in that environment decided before the outcome was seen.
    """
    insert = db.insert_for(engine)
    with engine.begin() as conn:
        inserted = conn.execute(
            insert(Outcome).values(
                repository=repository, environment=environment, sha=sha, outcome=outcome, source=source,
                source_key=source_key, observed_at=observed_at, detail=detail or {},
            ).on_conflict_do_nothing(index_elements=["source_key"]).returning(Outcome.id)
        ).first()  # fmt: skip
        if inserted is None:
            return False
        target = _history_row(conn, repository, environment, sha, observed_at, github_deployment_id, deployment_key)
        if target is not None and outcome == "success" and not _let_through_row(conn, target):
            # a success is the deployer's word: on a release gonogo rejected or never approved it would teach
            # the risk model that such a release goes well; the outcome stays stored, the row unlabelled
            target = None
        if target is not None:
            label_release(conn, target, outcome, observed_at)
    log.info("outcome.recorded", extra={"repository": repository, "environment": environment, "sha": sha[:7],
                                        "outcome": outcome, "source": source})  # fmt: skip
    return True


def label_release(conn: Connection, history_id: int, outcome: str, observed_at: datetime) -> bool:
    """Label a release's history row with an outcome: the one transition of a row's outcome. True if it changed.

    One conditional statement, so that two outcomes of the same release recorded at once cannot undo each other:
    - a success labels only a row with no outcome or a success (never hides a failure, whenever it arrives);
    - a failure labels any row; a release fails once, when first seen failing, so over an earlier failure the
      kind follows the latest report and the time stays the earliest (a later alert or status, or an earlier
      one delivered late, names the failure; the time is what later releases' features may know of it).
    """
    row = HistoryRow.__table__.c
    at = literal(observed_at, UTCDateTime())
    if outcome not in FAILED_OUTCOMES:
        changed = conn.execute(
            update(HistoryRow).where(HistoryRow.id == history_id,
                                     or_(row.outcome.is_(None), row.outcome.notin_(FAILED_OUTCOMES)))
            .values(outcome=outcome, outcome_at=at)
        ).rowcount  # fmt: skip
        return bool(changed)
    already_failed = and_(row.outcome.in_(FAILED_OUTCOMES), row.outcome_at.is_not(None), row.outcome_at < at)
    changed = conn.execute(
        update(HistoryRow).where(HistoryRow.id == history_id)
        .values(outcome=outcome, outcome_at=case((already_failed, row.outcome_at), else_=at))
    ).rowcount  # fmt: skip
    return bool(changed)


def _history_row(
    conn: Connection, repository: str, environment: str, sha: str, observed_at: datetime,
    github_deployment_id: int | None, deployment_key: str | None,
) -> int | None:
    """The id of the history row an outcome labels, or None (see ``record_outcome``)."""
    same_release = (HistoryRow.repository == repository, HistoryRow.environment == environment, HistoryRow.sha == sha)
    if deployment_key is None and github_deployment_id is not None:
        # the same commit may be gated more than once (a re-deploy, another run): the status names its deployment
        deployment_key = conn.execute(
            select(Deployment.key).where(
                Deployment.repository == repository, Deployment.environment == environment, Deployment.sha == sha,
                Deployment.github_deployment_id == github_deployment_id,
            ).order_by(Deployment.created_at.desc()).limit(1)
        ).scalar()  # fmt: skip
    if deployment_key is not None:
        # gonogo knows this deployment: its row or none (it may not be decided yet), never another deployment's
        return conn.execute(
            select(HistoryRow.id).where(*same_release, HistoryRow.deployment_id == deployment_key)
        ).scalar()  # fmt: skip
    # a deployment gonogo did not gate (deployed around the gate, or a source that names only the commit)
    return conn.execute(
        select(HistoryRow.id).where(*same_release, HistoryRow.created_at <= observed_at)
        .order_by(HistoryRow.created_at.desc()).limit(1)
    ).scalar()  # fmt: skip


def _let_through_row(conn: Connection, history_id: int) -> bool:
    """Whether the history row's deployment was answered ``approved`` (by gonogo, a reviewer or a dry run)."""
    answer = conn.execute(
        select(Deployment.answer).join(HistoryRow, HistoryRow.deployment_id == Deployment.key)
        .where(HistoryRow.id == history_id)
    ).scalar()  # fmt: skip
    return answer == "approved"


async def outcomes_recorded(ctx: Context, *repositories: str) -> None:
    """Tell the retrainer (when this process has one) that these repositories have new outcomes."""
    retrain = ctx.services.get("retrain")
    if retrain is not None:
        for repository in repositories:
            await retrain.outcome_recorded(repository)


def let_through() -> Any:
    """An outcome's commit is one gonogo approved in the outcome's repository and environment (a correlated EXISTS).

    A success status is the deployer's word: their workflow can post it on any deployment of any commit. So only
    the success of a commit gonogo let through says what went live there; a failure counts from any source.
    """
    return select(Deployment.id).where(
        Deployment.repository == Outcome.repository, Deployment.environment == Outcome.environment,
        Deployment.sha == Outcome.sha, Deployment.answer == "approved",
    ).exists()  # fmt: skip


def detect_rollback(engine: Engine, repository: str, environment: str, sha: str, at: datetime) -> str | None:
    """If ``sha`` was live before a newer release in this environment, that newer release was rolled back.

    What was live is read from the successes of releases gonogo let through: a success posted for a commit that
    never passed the gate would otherwise stand between the release and its rollback and take the blame.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(Outcome.sha, Outcome.observed_at).where(
                Outcome.repository == repository, Outcome.environment == environment, Outcome.outcome == "success",
                Outcome.observed_at < at, let_through(),
            ).order_by(Outcome.observed_at.desc()).limit(20)
        ).all()  # fmt: skip
    if not rows or rows[0].sha == sha:
        return None
    newer: str = rows[0].sha
    if any(r.sha == sha for r in rows[1:]):
        return newer
    return None


@router.on("deployment_status", "created")
async def on_deployment_status(ctx: Context, ev: Event) -> None:
    """A deployment finished: remember whether it worked, and whether it undid the release before it."""
    status = ev.payload.get("deployment_status") or {}
    deployment = ev.payload.get("deployment") or {}
    repository = (ev.payload.get("repository") or {}).get("full_name")
    outcome = STATE_TO_OUTCOME.get(str(status.get("state")))
    sha = deployment.get("sha")
    environment = status.get("environment") or deployment.get("environment")
    if not (outcome and repository and sha and environment):
        return  # queued / in_progress / inactive statuses carry no outcome
    created = status.get("created_at")
    at = parse_time(created if isinstance(created, str) else None) or datetime.now(UTC)
    rolled_back = None
    if outcome == "success":
        rolled_back = await asyncio.to_thread(detect_rollback, ctx.engine, repository, environment, sha, at)
    deployment_id = deployment.get("id")
    await asyncio.to_thread(
        record_outcome, ctx.engine, repository=repository, environment=environment, sha=sha, outcome=outcome,
        source="deployment_status", source_key=f"deployment_status:{status.get('id')}", observed_at=at,
        detail={"deployment_id": deployment_id, "description": status.get("description")},
        github_deployment_id=deployment_id if isinstance(deployment_id, int) and not isinstance(deployment_id, bool)
        else None,
    )  # fmt: skip
    if rolled_back:
        await asyncio.to_thread(
            record_outcome, ctx.engine, repository=repository, environment=environment, sha=rolled_back,
            outcome="rollback", source="rollback", source_key=f"rollback:{status.get('id')}",
            observed_at=at, detail={"rolled_back_to": sha},
        )  # fmt: skip
    await outcomes_recorded(ctx, repository)


def latest_release(engine: Engine, repository: str, environment: str, at: datetime, window: timedelta) -> str | None:
    """The sha gonogo most recently approved for this environment within ``window`` before ``at``."""
    with engine.connect() as conn:
        return conn.execute(
            select(Deployment.sha).where(
                Deployment.repository == repository, Deployment.environment == environment,
                Deployment.answer == "approved", Deployment.answered_at <= at, Deployment.answered_at >= at - window,
            ).order_by(Deployment.answered_at.desc()).limit(1)
        ).scalar()  # fmt: skip


WORKFLOW_TO_OUTCOME = {"success": "success", "failure": "failure", "timed_out": "failure"}


def record_workflow_run(engine: Engine, repository: str, run: dict[str, Any]) -> int:
    """Label the releases a gated workflow run shipped by how the whole run ended; return how many.

    For deploy workflows whose deployments report no status of their own: the run's attempt (the deployments
    made between its ``run_started_at`` and its end) gonogo let through
    (every gated deployment in it approved) that then failed or timed out marks those releases
    ``failure``; one that succeeded marks them ``success``. A run with a rejected deployment failed
    because of the rejection, a cancelled one says nothing, and a release whose own deployment has
    reported a status since its approval is labelled by that, the more precise signal (a status of
    another deployment of the same commit, a re-deploy, says nothing of this run).
    """
    outcome = WORKFLOW_TO_OUTCOME.get(str(run.get("conclusion")))
    run_id = run.get("id")
    if outcome is None or not isinstance(run_id, int):
        return 0
    updated, started = run.get("updated_at"), run.get("run_started_at")
    at = parse_time(updated if isinstance(updated, str) else None) or datetime.now(UTC)
    # this attempt's deployments: GitHub creates one per attempt, after the attempt starts and before it ends
    # (a re-run can only start once the run has ended), so a late completion of an earlier attempt, or the
    # unanswered deployment of a superseded one, says nothing of another attempt's releases
    attempt = [Deployment.created_at <= at]
    if isinstance(started, str) and (began := parse_time(started)) is not None:
        attempt.append(Deployment.created_at >= began)
    with engine.connect() as conn:
        gated = conn.execute(
            select(Deployment.key, Deployment.environment, Deployment.sha, Deployment.answer, Deployment.answered_at,
                   Deployment.github_deployment_id)
            .where(Deployment.repository == repository, Deployment.run_id == run_id, *attempt)
        ).all()  # fmt: skip
        if not gated or any(d.answer != "approved" for d in gated):
            return 0
        statuses = conn.execute(
            select(Outcome.environment, Outcome.sha, Outcome.observed_at, Outcome.detail).where(
                Outcome.repository == repository, Outcome.source == "deployment_status",
                Outcome.sha.in_({d.sha for d in gated}), Outcome.observed_at >= min(d.answered_at or at for d in gated),
            )
        ).all()  # fmt: skip
    recorded = 0
    for d in gated:
        if any(_status_of(s, d) for s in statuses):
            continue
        key = hashlib.sha256(d.key.encode()).hexdigest()[:16]
        recorded += record_outcome(
            engine, repository=repository, environment=d.environment, sha=d.sha, outcome=outcome,
            source="workflow_run", source_key=f"workflow_run:{run_id}:{run.get('run_attempt') or 1}:{key}",
            observed_at=at, detail={"workflow_run": run_id, "conclusion": run.get("conclusion"),
                                    "html_url": run.get("html_url")}, deployment_key=d.key,
        )  # fmt: skip
    return recorded


def _status_of(status: Any, deployment: Any) -> bool:
    """Whether a stored deployment status speaks for this gated deployment since its approval.

    A status names its GitHub deployment: a re-deploy of the same commit (another run) reports on its own
    deployment, and says nothing of how this one's run ended. Only for a deployment whose GitHub id gonogo
    does not know does the commit and environment stand in for it.
    """
    if status.environment != deployment.environment or status.sha != deployment.sha:
        return False
    if deployment.answered_at is not None and _aware(status.observed_at) < _aware(deployment.answered_at):
        return False
    if deployment.github_deployment_id is None:
        return True
    named = (status.detail or {}).get("deployment_id") if isinstance(status.detail, dict) else None
    return bool(named == deployment.github_deployment_id)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.on("workflow_run", "completed")
async def on_workflow_run(ctx: Context, ev: Event) -> None:
    """A gated deploy workflow finished: how it ended is an outcome when its deployments report none."""
    run = ev.payload.get("workflow_run") or {}
    repository = (ev.payload.get("repository") or {}).get("full_name")
    if not isinstance(run, dict) or not isinstance(repository, str):
        return
    if await asyncio.to_thread(record_workflow_run, ctx.engine, repository, run):
        await outcomes_recorded(ctx, repository)
