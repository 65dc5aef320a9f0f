"""review actor id: who answered an escalation, by account id as well as login

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 22:00:00

The outcome record that relaxes rules (github_app/learning.py) counts an approval only when someone
other than the deployer gave it, and compared logins to tell. An account keeps its id when it changes
its login, so a deployer allowed to approve their own deployment (four_eyes: false) could, renamed,
pass for an independent reviewer. Each review keeps the account id beside the login from now on
(reviews recorded before stay without one and are judged by login).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("actor_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): the column is neither indexed nor constrained
    op.drop_column("reviews", "actor_id")
