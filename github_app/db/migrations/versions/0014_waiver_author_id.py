"""waiver author id: who granted a waiver, by account id as well as login

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 10:00:00

Under four eyes the person who triggered a deployment may not waive its rules. The comment that grants
a waiver may name any commit (`for <sha>`) or every commit (`--env-wide`), so the gate checks the
waiver's author against each deployment it would pass; an account keeps its id when it changes its
login, so the waiver keeps the id beside the login (waivers stored before are judged by login).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("waivers", sa.Column("author_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): the column is neither indexed nor constrained
    op.drop_column("waivers", "author_id")
