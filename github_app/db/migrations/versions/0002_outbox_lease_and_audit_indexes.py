"""outbox lease owner; indexes for the outbox claim, waiver lookup and audit export

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The dispatcher marks a message sent only while it still holds the lease it took (its token).
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_outbox_claim", ["state", "next_attempt_at"], unique=False)
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.create_index("ix_waivers_lookup", ["repository", "environment", "expires_at"], unique=False)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_created_at")
    with op.batch_alter_table("waivers", schema=None) as batch_op:
        batch_op.drop_index("ix_waivers_lookup")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_claim")
        batch_op.drop_column("lease_owner")
