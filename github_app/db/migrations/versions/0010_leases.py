"""leases: a named periodic job that one process at a time runs (webhook redelivery)

Revision ID: 0010
Revises: 0004
Create Date: 2026-12-07 03:20:00

Every process that runs workers also asks GitHub to redeliver webhooks it missed. With several
processes on PostgreSQL only one of them should do it per interval; the lease row says which one
and until when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
