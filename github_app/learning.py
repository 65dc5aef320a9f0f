"""Read a repository's outcome record per learnable rule from the history table (see rules/learning.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from github_app.db import read_only
from github_app.db.models import Deployment, HistoryRow
from rules.learning import PastDeployment, TrackRecord, tally
from rules.policy import Learning

MAX_ROWS = 1000  # the newest deployments in the window are plenty to bound a failure rate


def track_record(
    engine: Engine, repository: str, environment: str, deployment_key: str, now: datetime, settings: Learning
) -> dict[str, TrackRecord] | None:
    """The outcome record of each learnable rule over the window before ``now``; None when learning is off.

    Each history row carries the majors its decision found (``major_findings``) and its action (``escalate``
    when reviewers were asked); the deployment row carries the answer and the history row the outcome.
    """
    if not settings.enabled or not settings.rules:
        return None
    # only the two keys learning reads, not the whole features document of up to MAX_ROWS rows
    majors_of, action_of = HistoryRow.features["major_findings"], HistoryRow.features["action"].as_string()
    query = (
        select(majors_of, action_of, HistoryRow.outcome, Deployment.answer)
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
    for majors, action, outcome, answer in rows:
        if not isinstance(majors, list):  # imported or older rows: their findings are not known
            continue
        asked = action == "escalate"  # a dry run approves what it would have escalated
        past.append(PastDeployment(tuple(str(m) for m in majors), asked, answer, outcome))
    return tally(past, settings.rules)
