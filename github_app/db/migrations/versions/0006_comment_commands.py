"""one row per PR comment that issued a `/gonogo` command, so a comment acts at most once

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07 03:10:00

GitHub may deliver the same comment again under a new delivery id (a manual redelivery, or a
replay by someone holding a captured body). Without a record of which comments already acted, a
redelivered approval answered whatever deployment of the pull request was waiting at that moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comment_commands",
        sa.Column("comment_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("repository", sa.String(length=200), nullable=False),
        sa.Column("delivery_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("comment_id", name=op.f("pk_comment_commands")),
    )


def downgrade() -> None:
    op.drop_table("comment_commands")
