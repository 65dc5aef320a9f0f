"""room for GitHub's longest environment names (255 characters), and the keys built from them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:30:00

GitHub allows environment names up to 255 characters. The environment columns held 200, and a
deployment's key (repository, run, environment, deployment id: up to about 420 characters) went
into columns of 400 (deployments, audit log) and 200 (history), so on PostgreSQL a deployment to a
long-named environment failed until its delivery was dead and its protection rule was never
answered. Widening a varchar is a catalog change on PostgreSQL (no table rewrite). SQLite does
not enforce declared lengths, so there is nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, width before, width after)
COLUMNS = (
    ("deployments", "environment", 200, 255),
    ("outcomes", "environment", 200, 255),
    ("history", "environment", 200, 255),
    ("waivers", "environment", 200, 255),
    ("deployments", "key", 400, 512),
    ("history", "deployment_id", 200, 512),
    ("audit_log", "deployment_key", 400, 512),
)


def _resize(wider: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column, before, after in COLUMNS:
        bind.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({after if wider else before})")


def upgrade() -> None:
    _resize(wider=True)


def downgrade() -> None:
    _resize(wider=False)
