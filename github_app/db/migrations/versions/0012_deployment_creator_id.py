"""deployment creator id: the account that triggered a deployment, by its id as well as its login

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:30:00

Four eyes compared a reviewer's login with the deployer's login as GitHub sent it with the deployment.
A GitHub account may change its login at any moment, keeping its id, team memberships and permissions,
so the deployer could approve their own deployment under a new login. The deployer's numeric id is kept
beside the login from now on (deployments recorded before stay without one and are judged by login).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("creator_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): the column is neither indexed nor constrained
    op.drop_column("deployments", "creator_id")
