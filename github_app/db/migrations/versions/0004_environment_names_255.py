"""room for GitHub's longest environment names (255 characters)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:30:00

GitHub allows environment names up to 255 characters; the columns held 200, so PostgreSQL refused
to store a deployment to a longer-named environment and its protection rule was never answered.
Widening a varchar is a catalog change on PostgreSQL (no table rewrite). SQLite does not enforce
declared lengths, so there is nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("deployments", "outcomes", "history", "waivers")


def _resize(length: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        bind.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN environment TYPE VARCHAR({length})")


def upgrade() -> None:
    _resize(255)


def downgrade() -> None:
    _resize(200)
