"""deployment facts: the decision's headline, a human's review and the change's first commit on the row

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:00:00

The insights report reads, for every deployment of its window, the verdict, action and risk of its
decision, whether a reviewer's answer was accepted, and the first commit of the change (lead time).
Each was a lookup in another table per deployment (the first commit a field of the history row's JSON,
parsed whole for each); they are now columns of the deployment, written by the transitions that learn
them. This migration adds the columns and fills them for the deployments already recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# the answers a reviewer gives (github_app/deployments.py HUMAN_ACTIONS, as of this revision)
_HUMAN_ACTIONS = ("approve", "reject", "override")
_BATCH = 2000


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN on both databases: SQLite's batch mode would copy the table, which its
    # foreign keys (decisions, reviews, evidence) forbid once deployments are recorded
    op.add_column("deployments", sa.Column("verdict", sa.String(16), nullable=True))
    op.add_column("deployments", sa.Column("decided_action", sa.String(16), nullable=True))
    op.add_column("deployments", sa.Column("risk", sa.Float(), nullable=True))
    op.add_column("deployments", sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deployments", sa.Column("human_reviewed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("deployments", sa.Column("first_commit_at", sa.DateTime(timezone=True), nullable=True))
    _fill()


def _fill() -> None:
    deployments = sa.table(
        "deployments", sa.column("id", sa.BigInteger), sa.column("key", sa.String), sa.column("decision_id", sa.BigInteger),
        sa.column("verdict", sa.String), sa.column("decided_action", sa.String), sa.column("risk", sa.Float),
        sa.column("decided_at", sa.DateTime(timezone=True)), sa.column("human_reviewed", sa.Boolean),
        sa.column("first_commit_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    decisions = sa.table("decisions", sa.column("id", sa.BigInteger), sa.column("verdict", sa.String),
                         sa.column("action", sa.String), sa.column("risk", sa.Float),
                         sa.column("created_at", sa.DateTime(timezone=True)))  # fmt: skip
    reviews = sa.table("reviews", sa.column("deployment_id", sa.BigInteger), sa.column("action", sa.String),
                       sa.column("allowed", sa.Boolean))  # fmt: skip
    history = sa.table("history", sa.column("deployment_id", sa.String), sa.column("features", sa.JSON))
    bind = op.get_bind()

    def of_decision(column: str) -> Any:
        return (sa.select(decisions.c[column]).where(decisions.c.id == deployments.c.decision_id)
                .scalar_subquery())  # fmt: skip

    bind.execute(
        deployments.update().where(deployments.c.decision_id.is_not(None)).values(
            verdict=of_decision("verdict"), decided_action=of_decision("action"), risk=of_decision("risk"),
            decided_at=of_decision("created_at"),
        )
    )  # fmt: skip
    reviewed = sa.exists().where(reviews.c.deployment_id == deployments.c.id, reviews.c.allowed.is_(True),
                                 reviews.c.action.in_(_HUMAN_ACTIONS))  # fmt: skip
    bind.execute(deployments.update().where(reviewed).values(human_reviewed=True))
    # the first commit was an ISO-8601 text in the history row's JSON: read in Python, as the report read it
    rows = bind.execute(
        sa.select(deployments.c.id, history.c.features)
        .select_from(deployments.join(history, history.c.deployment_id == deployments.c.key))
        .order_by(deployments.c.id)
    )
    update = (deployments.update().where(deployments.c.id == sa.bindparam("row_id"))
              .values(first_commit_at=sa.bindparam("first")))  # fmt: skip
    pending: list[dict[str, Any]] = []
    for row_id, features in rows:
        first = first_commit_time((features or {}).get("first_commit_at") if isinstance(features, dict) else None)
        if first is not None:
            pending.append({"row_id": row_id, "first": first})
        if len(pending) >= _BATCH:
            bind.execute(update, pending)
            pending = []
    if pending:
        bind.execute(update, pending)


def first_commit_time(value: object) -> datetime | None:
    """A stored first-commit text as an aware UTC time; None when it is not an ISO-8601 time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): none of these columns is indexed or constrained
    for column in ("first_commit_at", "human_reviewed", "decided_at", "risk", "decided_action", "verdict"):
        op.drop_column("deployments", column)
