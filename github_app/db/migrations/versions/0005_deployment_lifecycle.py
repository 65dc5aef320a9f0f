"""the deployment lifecycle: the repository's default branch and when the escalation was announced

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 03:00:00

The escalation sweeper reads the policy from the repository's default branch, which only the webhook
payload names, so it is kept on the deployment (rows from before stay NULL and are read as ``main``,
as before). ``announced_at`` records the one PR comment of an escalation before it is posted, so a
redelivery or a second worker never posts it again. The new states (``decided``, ``answering``,
``abandoned``) fit the existing ``state`` column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("default_branch", sa.String(255), nullable=True))
        batch.add_column(sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deployments_state", "deployments", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_deployments_state", table_name="deployments")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("announced_at")
        batch.drop_column("default_branch")
