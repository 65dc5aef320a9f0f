"""compress stored webhook payloads with lz4 on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:30:00

Webhook bodies are 5-30 KB of JSON, so PostgreSQL compresses every one it stores. Its default
(pglz) costs about twice the CPU of lz4 on the intake's hot path; lz4 is available from
PostgreSQL 14 when the server was built with it. Where it is not, the column keeps the server's
default and the intake still works, only slower. SQLite stores the text as is.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("gonogo.migrations")


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            bind.exec_driver_sql(f"ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION {method}")
    except sa.exc.DBAPIError as exc:  # PostgreSQL before 14, or built without lz4
        log.warning("db.payload_compression_unchanged", extra={"method": method, "reason": str(exc.orig)[:200]})


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
