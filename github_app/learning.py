"""Read a repository's outcome record per learnable rule from the history table (see rules/learning.py)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine, and_, exists, func, or_, select

from github_app.db import read_only
from github_app.db.models import Deployment, HistoryRow, Review
from rules.learning import PastDeployment, TrackRecord, tally
from rules.policy import Learning

log = logging.getLogger(__name__)

MAX_ROWS = 1000  # the newest deployments in the window are plenty to bound a failure rate


def track_record(
    engine: Engine, repository: str, environment: str, deployment_key: str, now: datetime, settings: Learning
) -> dict[str, TrackRecord] | None:
    """The outcome record of each learnable rule over the window before ``now``; None when learning is off.

    Each history row carries the majors its decision found (``major_findings``) and its action (``escalate``
    when reviewers were asked); the deployment row carries the answer and the history row the outcome.
    What a deployer can bring about alone vouches for nothing:

    - an outcome counts only for a deployment the gate let through (answered ``approved``): a status
      posted on an escalation nobody approved, or on a rejected one, is not an outcome of a release;
    - an approval counts only when a reviewer other than the deployer approved (an allowed ``approve``
      review by another login and, where both are known, another account id); the deployer's own approval
      (``four_eyes: false``, under any login) or a break-glass override counts against;
    - every earlier deployment of one commit (the one being deployed too: its failure counts against a
      re-run) or of one day counts once.

    A record that cannot be read relaxes nothing: each rule's record then carries the error.
    """
    if not settings.enabled or not settings.rules:
        return None
    try:
        return _read(engine, repository, environment, deployment_key, now, settings)
    except Exception as exc:  # noqa: BLE001 - an unreadable record is no record: nothing relaxed, the reason shown
        log.warning("learning.record_unreadable", extra={"repository": repository, "environment": environment,
                                                         "error": f"{type(exc).__name__}: {exc}"[:300]})  # fmt: skip
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        return {rid: TrackRecord(rule_id=rid, error=error) for rid in settings.rules}


def _read(
    engine: Engine, repository: str, environment: str, deployment_key: str, now: datetime, settings: Learning
) -> dict[str, TrackRecord]:
    # only the two keys learning reads, not the whole features document of up to MAX_ROWS rows
    majors_of, action_of = HistoryRow.features["major_findings"], HistoryRow.features["action"].as_string()
    # someone other than the deployer: another login, and (where both ids are known) another account, as a
    # deployer may rename their account and keep it
    vouched = exists().where(and_(
        Review.deployment_id == Deployment.id, Review.action == "approve", Review.allowed.is_(True),
        func.lower(Review.actor) != func.lower(func.coalesce(Deployment.creator, "")),
        or_(Review.actor_id.is_(None), Deployment.creator_id.is_(None), Review.actor_id != Deployment.creator_id),
    ))  # fmt: skip
    query = (
        select(majors_of, action_of, HistoryRow.outcome, Deployment.answer, vouched, HistoryRow.sha,
               HistoryRow.created_at)
        .join(Deployment, Deployment.key == HistoryRow.deployment_id, isouter=True)
        .where(HistoryRow.repository == repository, HistoryRow.environment == environment,
               HistoryRow.created_at >= now - settings.window, HistoryRow.created_at < now,
               HistoryRow.deployment_id != deployment_key)
        .order_by(HistoryRow.created_at.desc(), HistoryRow.id.desc())
        .limit(MAX_ROWS)
    )  # fmt: skip
    with read_only(engine) as conn:
        rows = conn.execute(query).all()
    past = []
    for majors, action, outcome, answer, independent, row_sha, created_at in rows:
        if not isinstance(majors, list):  # imported or older rows: their findings are not known
            continue
        asked = action == "escalate"  # a dry run approves what it would have escalated
        if answer == "approved" and asked and not independent:
            answer = "unvouched"
        shipped = answer in ("approved", "unvouched")  # only a release the gate let through has an outcome
        past.append(PastDeployment(tuple(str(m) for m in majors), asked, answer, outcome if shipped else None,
                                   row_sha, created_at.date()))  # fmt: skip
    return tally(past, settings.rules)
