"""indexes for the dashboard, the API and the insights: pages by time, outcomes by release, audit by deployment

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-07 03:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = (
    # newest-first pages with a (created_at, id) cursor, and windows over every repository
    ("deployments", "ix_deployments_created", ["created_at", "id"]),
    # one environment across repositories
    ("deployments", "ix_deployments_env_only", ["environment", "created_at"]),
    # the deployment an outcome belongs to (newest of its sha to its environment)
    ("deployments", "ix_deployments_release", ["repository", "environment", "sha", "created_at"]),
    # escalations still waiting (no answer yet) without reading the answered ones
    ("deployments", "ix_deployments_answer", ["answer", "created_at"]),
    # outcomes of one release (a deployment page, attribution) and windows of outcomes
    ("outcomes", "ix_outcomes_release", ["repository", "environment", "sha", "observed_at"]),
    ("outcomes", "ix_outcomes_observed", ["observed_at"]),
    # a deployment page's audit entries
    ("audit_log", "ix_audit_log_deployment", ["deployment_key", "seq"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
