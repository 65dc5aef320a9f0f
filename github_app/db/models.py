"""SQLAlchemy 2 tables of gonogo. Alembic migrations in github_app/db/migrations mirror these."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

import zstandard
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_compressors = threading.local()  # a zstd compressor is not thread-safe; one per thread, reused


class WebhookPayload(TypeDecorator[str]):
    """A webhook body (JSON text), stored compressed on SQLite.

    PostgreSQL compresses the text itself (lz4, migration 0003). SQLite stores bytes as given, so
    here the text goes in as a zstd frame, 5-7 times smaller for GitHub's payloads, which also
    makes the intake's commits cheaper. Reading gives the text back either way, and rows written
    as plain text before this existed still read as they are.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | bytes | None:
        if value is None or dialect.name != "sqlite":
            return value
        compressor = getattr(_compressors, "zstd", None)
        if compressor is None:
            compressor = _compressors.zstd = zstandard.ZstdCompressor(level=1)
        return bytes(compressor.compress(value.encode()))

    def process_result_value(self, value: str | bytes | None, dialect: Any) -> str | None:
        if isinstance(value, bytes | memoryview):
            data = bytes(value)
            if data[:4] == _ZSTD_MAGIC:
                data = zstandard.ZstdDecompressor().decompress(data)
            return data.decode()
        return value


# BigInteger primary keys autoincrement on PostgreSQL; SQLite only does so for INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Delivery(Base):
    """The inbox: one row per webhook delivery GitHub made to us."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(100), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(WebhookPayload())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # pending | processing | done | dead | ignored
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_count: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_deliveries_claim", "state", "next_attempt_at"),)


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_login: Mapped[str | None] = mapped_column(String(200))
    account_type: Mapped[str | None] = mapped_column(String(32))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Deployment(Base):
    """One protection-rule request: a workflow run attempt waiting on an environment."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # repository / run id / environment / run attempt: GitHub re-sends on re-run
    key: Mapped[str] = mapped_column(String(512), unique=True)
    repository: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(400))
    run_id: Mapped[int] = mapped_column(BigInteger)
    github_deployment_id: Mapped[int | None] = mapped_column(BigInteger)
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    creator: Mapped[str | None] = mapped_column(String(200))
    # the deployer's account id: a login can change at any moment, the id cannot (four eyes compares both)
    creator_id: Mapped[int | None] = mapped_column(BigInteger)
    pull_requests: Mapped[list[Any]] = mapped_column(JSON, default=list)
    callback_url: Mapped[str | None] = mapped_column(String(600))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # evaluating | decided | escalated | answering | answered | abandoned (github_app/deployments.py)
    state: Mapped[str] = mapped_column(String(16), default="evaluating")
    check_run_id: Mapped[int | None] = mapped_column(BigInteger)
    # the answer we intend to give (stored before calling GitHub) and whether GitHub took it
    answer: Mapped[str | None] = mapped_column(String(16))  # approved | rejected
    answer_comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_reports: Mapped[int] = mapped_column(Integer, default=0)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_id: Mapped[int | None] = mapped_column(BigInteger)
    # one worker at a time evaluates a deployment; the lease runs out if that worker dies
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    default_branch: Mapped[str | None] = mapped_column(String(255))  # migration 0005
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # migration 0005
    # what the insights count of each deployment, kept on its row by the transitions that learn it
    # (migration 0011): the decision's headline (record_decision), whether a human's answer was accepted
    # for review (note_human_review), and the first commit of the change (lead time)
    verdict: Mapped[str | None] = mapped_column(String(16))  # go | escalate | no-go
    decided_action: Mapped[str | None] = mapped_column(String(16))  # approve | reject | escalate
    risk: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    human_reviewed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    first_commit_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_deployments_env", "repository", "environment", "created_at"),
        Index("ix_deployments_state", "state", "lease_until"),
        Index("ix_deployments_created", "created_at", "id"),  # migration 0009: pages and windows
        Index("ix_deployments_env_only", "environment", "created_at"),
        Index("ix_deployments_release", "repository", "environment", "sha", "created_at"),
        Index("ix_deployments_answer", "answer", "created_at"),
    )


class EvidenceRecord(Base):
    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # Evidence JSON
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # compact perf samples, coverage for later deltas


class DecisionRecord(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verdict: Mapped[str] = mapped_column(String(16))  # go | escalate | no-go
    action: Mapped[str] = mapped_column(String(16))  # approve | reject | escalate
    readiness_score: Mapped[float | None] = mapped_column(Float)
    risk: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    policy_sha: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Review(Base):
    """A human's attempt to decide an escalation (allowed or refused)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    delivery_id: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # the account's id: a login can change, an id cannot
    action: Mapped[str] = mapped_column(String(16))  # approve | reject | override | waive
    allowed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    refusal: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Outcome(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | rollback | incident
    source: Mapped[str] = mapped_column(String(64))  # deployment_status | workflow_run | alert | manual
    source_key: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_outcomes_release", "repository", "environment", "sha", "observed_at"),  # migration 0009
        Index("ix_outcomes_observed", "observed_at"),
    )


class HistoryRow(Base):
    """The deployment history table (docs/history.md), one row per decided deployment."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(512), unique=True)
    repository: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    features: Mapped[dict[str, Any]] = mapped_column(JSON)  # every other history column

    __table_args__ = (Index("ix_history_env", "repository", "environment", "created_at"),)


class RiskModelRecord(Base):
    __tablename__ = "risk_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str | None] = mapped_column(String(200))  # None: applies to all repositories
    version: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    trained_rows: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)  # features, library versions, metrics
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class Waiver(Base):
    __tablename__ = "waivers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(255))
    rule_id: Mapped[str] = mapped_column(String(32))
    sha: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(BigInteger)  # the author's account id (migration 0014)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_waivers_lookup", "repository", "environment", "expires_at"),)


class CommentCommand(Base):
    """A PR comment that issued a `/gonogo` command: each comment acts at most once, whatever its deliveries."""

    __tablename__ = "comment_commands"

    comment_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repository: Mapped[str] = mapped_column(String(200))
    delivery_id: Mapped[str] = mapped_column(String(100))  # the delivery that acted; its own retries may go on
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Append-only, hash-chained record of everything gonogo decided or did."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(200))
    deployment_key: Mapped[str | None] = mapped_column(String(512))
    actor: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        Index("ix_audit_log_deployment", "deployment_key", "seq"),  # migration 0009
    )


class OutboxMessage(Base):
    """A notification to deliver, written in the same transaction as the state change."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)  # no duplicates after a crash
    channel: Mapped[str] = mapped_column(String(16))  # slack | teams | webhook
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    secret_env: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sending | sent | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(100))  # migration 0002
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_outbox_claim", "state", "next_attempt_at"),)


__all__ = [
    "AuditEntry", "Base", "DecisionRecord", "Delivery", "Deployment", "EvidenceRecord", "HistoryRow",
    "Installation", "OutboxMessage", "Outcome", "Review", "RiskModelRecord", "UniqueConstraint", "Waiver",
]  # fmt: skip


class Lease(Base):
    """A named job that one process at a time may run (the webhook redelivery pass), held until ``until``."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    until: Mapped[datetime] = mapped_column(UTCDateTime())
