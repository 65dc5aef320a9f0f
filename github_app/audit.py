"""The append-only, hash-chained audit log: append inside the caller's transaction, verify, export.

Each entry's ``hash`` is SHA-256 over a canonical JSON of its sequence number, time, kind,
repository, deployment key, actor, data and the previous entry's hash, so changing, removing or
reordering any entry breaks the chain at that point and ``verify`` names it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, func, insert, select, text
from sqlalchemy.orm import Session

from github_app.db.models import AuditEntry
from rules.types import Decision

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Arbitrary constant naming gonogo's audit-chain lock among PostgreSQL advisory locks.
ADVISORY_LOCK_KEY = 0x676F6E6F676F  # "gonogo"

KINDS = (
    "evaluation", "decision", "status_report", "review_attempt", "waiver", "override", "notification", "answer",
    "reminder", "lifecycle", "alert_refused",
)  # fmt: skip
EXPORT_FIELDS = ("seq", "created_at", "kind", "repository", "deployment_key", "actor", "data", "prev_hash", "hash")

Problem = Literal["altered", "missing", "chain_broken", "reordered", "head_mismatch"]


class AuditError(Exception):
    """An entry cannot be written; the message says what to change."""


def redact_url(url: str) -> str:
    """Keep only scheme and host: chat webhook URLs carry their secret in the path (or the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/\u2026" if parts.netloc else "<invalid url>"


def redact_urls(value: Any) -> Any:
    """A copy of plain JSON data with every ``url`` field cut down to scheme and host."""
    if isinstance(value, Mapping):
        return {k: redact_url(v) if k == "url" and isinstance(v, str) else redact_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_urls(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """Turn ``value`` into plain JSON types, the exact form that is stored and hashed."""
    # Exact built-in types first: a decision's dump is thousands of them, and these checks cost a
    # fraction of the isinstance chain below (which treats each of them the same way).
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    if kind is list:
        return [_jsonable(v) for v in value]
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        # sets have no order; sort them so the hash does not depend on iteration order
        return sorted(items, key=canonical_json) if isinstance(value, set | frozenset) else items
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; keep the fact visible rather than failing the decision
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    raise AuditError(f"audit data holds a {type(value).__name__}, which has no JSON form; convert it first")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise AuditError("naive datetime in audit data; use timezone-aware UTC datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(value: Any) -> str:
    """Serialise plain JSON data deterministically (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(
    seq: int, created_at: datetime, kind: str, repository: str | None, deployment_key: str | None,
    actor: str | None, data: Any, prev_hash: str,
) -> str:  # fmt: skip
    """Return the SHA-256 hex digest that chains one entry to the previous one."""
    material = [seq, _iso(created_at), kind, repository, deployment_key, actor, data, prev_hash]
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


def _connection(conn_or_session: Connection | Session) -> Connection:
    return conn_or_session.connection() if isinstance(conn_or_session, Session) else conn_or_session


def append(
    conn_or_session: Connection | Session,
    kind: str,
    *,
    repository: str | None = None,
    deployment_key: str | None = None,
    actor: str | None = None,
    data: Mapping[str, Any] | BaseModel | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's open transaction; it commits or rolls back with it."""
    if kind not in KINDS:
        raise AuditError(f"unknown audit kind {kind!r}; use one of {', '.join(KINDS)}")
    conn = _connection(conn_or_session)
    if not conn.in_transaction():
        raise AuditError("audit.append needs an open transaction: call it inside `with engine.begin()`")
    payload = _jsonable(data if data is not None else {})
    if now is not None and now.tzinfo is None:
        raise AuditError("naive `now` given to audit.append; use a timezone-aware UTC datetime")
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    _serialise(conn)
    last = conn.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    digest = entry_hash(seq, created_at, kind, repository, deployment_key, actor, payload, prev_hash)
    values = {
        "seq": seq, "created_at": created_at, "kind": kind, "repository": repository,
        "deployment_key": deployment_key, "actor": actor, "data": payload, "prev_hash": prev_hash, "hash": digest,
    }  # fmt: skip
    entry_id = conn.execute(insert(AuditEntry).values(**values).returning(AuditEntry.id)).scalar_one()
    log.debug("audit.appended", extra={"seq": seq, "kind": kind})
    return AuditEntry(id=entry_id, **values)


def _serialise(conn: Connection) -> None:
    """Hold the appenders' lock until the transaction ends: the last entry read stays the last one."""
    if conn.dialect.name == "postgresql":  # an advisory lock taken twice in one transaction is simply held
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    # On SQLite every transaction already holds the write lock (BEGIN IMMEDIATE in make_engine).


def append_once(
    conn_or_session: Connection | Session, kind: str, once: str, *, since: datetime, repository: str | None = None,
    actor: str | None = None, data: Mapping[str, Any] | None = None,
) -> AuditEntry | None:
    """Append an entry whose ``data["once"]`` is ``once``, unless one of ``kind`` was written since ``since``.

    For facts that repeat (Alertmanager re-sends an alert while it fires): recorded once, however often it
    comes back, even from workers racing (the check runs under the appenders' lock). None when already there.
    """
    if kind not in KINDS:
        raise AuditError(f"unknown audit kind {kind!r}; use one of {', '.join(KINDS)}")
    conn = _connection(conn_or_session)
    if not conn.in_transaction():
        raise AuditError("audit.append_once needs an open transaction: call it inside `with engine.begin()`")
    _serialise(conn)
    seen = conn.execute(
        select(AuditEntry.id).where(AuditEntry.created_at >= since, AuditEntry.kind == kind,
                                    AuditEntry.repository == repository if repository is not None
                                    else AuditEntry.repository.is_(None),
                                    AuditEntry.data["once"].as_string() == once).limit(1)
    ).first()  # fmt: skip
    if seen is not None:
        return None
    return append(conn, kind, repository=repository, actor=actor, data={**(data or {}), "once": once})


def count_since(engine: Engine, kind: str, since: datetime) -> int:
    """How many entries of ``kind`` were written since ``since`` (a range of the created_at index)."""
    with engine.connect() as conn:
        return int(conn.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.created_at >= since, AuditEntry.kind == kind)
        ).scalar_one())  # fmt: skip


def append_decision(
    conn_or_session: Connection | Session,
    decision: Decision,
    *,
    deployment_key: str,
    policy_sha: str | None,
    effective_policy: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Record a decision with everything needed to explain it later exactly as it was made.

    The entry holds the whole decision (findings, scores, reasons and the evidence it was made
    from), the policy as evaluated with the commit sha it was read at, and the risk model version.
    """
    return append(
        conn_or_session, "decision", repository=decision.repository, deployment_key=deployment_key, now=now,
        data={
            "verdict": decision.verdict, "action": decision.action, "mode": decision.mode,
            "policy_sha": policy_sha, "policy_source": decision.policy_source,
            # the policy as evaluated, minus the secrets some of its URLs are (a Slack webhook's path)
            "effective_policy": redact_urls(effective_policy) if effective_policy is not None else None,
            "model_version": decision.risk.model_version, "risk_source": decision.risk.source,
            "decision": decision,
        },
    )  # fmt: skip


def head(engine: Engine) -> tuple[int, str] | None:
    """The newest entry's seq and hash (as stored, not verified); None while the log is empty."""
    with engine.connect() as conn:
        row = conn.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    return (int(row.seq), str(row.hash)) if row is not None else None


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One way the log differs from what was written."""

    seq: int
    problem: Problem
    message: str


@dataclass
class VerifyReport:
    """What ``verify`` found: the entries checked, the head of the chain and every problem."""

    entries: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    findings: list[Finding] = field(default_factory=list)
    truncated: bool = False  # more findings than were kept

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_seq(self) -> int | None:
        return self.findings[0].seq if self.findings else None

    def summary(self) -> str:
        """Describe the result in one or a few lines for people."""
        if self.ok:
            head = f"; head seq {self.head_seq} hash {self.head_hash}" if self.head_seq is not None else ""
            return f"Audit log intact: {self.entries} entries{head}."
        lines = [f"Audit log TAMPERED: first bad entry is seq {self.first_bad_seq}."]
        lines += [f"  seq {f.seq}: {f.problem}: {f.message}" for f in self.findings]
        if self.truncated:
            lines.append("  (more problems not listed)")
        return "\n".join(lines)


def _rows(engine: Engine, since: datetime | None = None, batch: int = 1000) -> Iterator[Any]:
    stmt = select(
        AuditEntry.id, AuditEntry.seq, AuditEntry.created_at, AuditEntry.kind, AuditEntry.repository,
        AuditEntry.deployment_key, AuditEntry.actor, AuditEntry.data, AuditEntry.prev_hash, AuditEntry.hash,
    ).order_by(AuditEntry.seq)  # fmt: skip
    if since is not None:
        stmt = stmt.where(AuditEntry.created_at >= since)
    # Page by seq rather than hold one cursor open: SQLite readers would otherwise pin the WAL.
    last = None
    while True:
        page = stmt if last is None else stmt.where(AuditEntry.seq > last)
        with engine.connect() as conn:
            rows = conn.execute(page.limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(
    engine: Engine, *, expect_head: tuple[int, str] | None = None, max_findings: int = 50
) -> VerifyReport:
    """Recompute the chain from the first entry and report every altered, missing or reordered entry."""
    report = VerifyReport()

    def note(seq: int, problem: Problem, message: str) -> None:
        if len(report.findings) < max_findings:
            report.findings.append(Finding(seq, problem, message))
        else:
            report.truncated = True

    expected_seq, prev_hash, prev_id = 1, GENESIS_HASH, None
    anchor_seen = False
    for row in _rows(engine):
        report.entries += 1
        if row.seq > expected_seq:
            gone = f"seq {expected_seq}" if row.seq == expected_seq + 1 else f"seq {expected_seq}..{row.seq - 1}"
            note(expected_seq, "missing", f"{gone} removed: the log jumps from seq {expected_seq - 1} to {row.seq}")
        elif row.seq < expected_seq:  # only possible before seq 1: sequence numbers were rewritten
            note(row.seq, "altered", f"sequence number {row.seq} was never issued (the log starts at seq 1)")
        recomputed = entry_hash(
            row.seq, row.created_at, row.kind, row.repository, row.deployment_key, row.actor, row.data, row.prev_hash
        )
        if recomputed != row.hash:
            note(row.seq, "altered", f"content ({row.kind}, {_iso(row.created_at)}) does not match its stored hash")
        elif row.prev_hash != prev_hash and row.seq == expected_seq:
            note(row.seq, "chain_broken", "its prev_hash is not the hash of the entry before it "
                 "(an entry was replaced, or removed and the rest renumbered)")  # fmt: skip
        if prev_id is not None and row.id < prev_id:
            # Entries are inserted in seq order under the lock, so row ids grow with seq.
            note(row.seq, "reordered", f"stored before the entry it follows (row id {row.id} < {prev_id})")
        if expect_head is not None and row.seq == expect_head[0]:
            anchor_seen = True
            if row.hash != expect_head[1]:
                note(row.seq, "head_mismatch", f"hash {row.hash} differs from the recorded anchor {expect_head[1]}")
        expected_seq, prev_hash, prev_id = row.seq + 1, row.hash, row.id
        report.head_seq, report.head_hash = row.seq, row.hash
    if expect_head is not None and not anchor_seen:
        note(expect_head[0], "missing", f"the anchored entry seq {expect_head[0]} is gone "
             f"(the log ends at seq {report.head_seq or 0}): entries were removed from the end")  # fmt: skip
    report.findings.sort(key=lambda f: f.seq)
    log.info("audit.verified", extra={"entries": report.entries, "ok": report.ok, "first_bad_seq": report.first_bad_seq})
    return report


# --- export ---------------------------------------------------------------------------------


def _record(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq, "created_at": _iso(row.created_at), "kind": row.kind, "repository": row.repository,
        "deployment_key": row.deployment_key, "actor": row.actor, "data": row.data,
        "prev_hash": row.prev_hash, "hash": row.hash,
    }  # fmt: skip


def export(engine: Engine, since: datetime | None, fmt: Literal["jsonl", "csv"], out: IO[str]) -> int:
    """Write entries created at or after ``since`` to ``out`` as JSON lines or CSV; return the count."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}; use jsonl or csv")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for row in _rows(engine, since):
        rec = _record(row)
        if writer is None:
            out.write(canonical_json(rec) + "\n")
        else:
            writer.writerow({**rec, "data": canonical_json(rec["data"])})
        count += 1
    log.info("audit.exported", extra={"entries": count, "format": fmt})
    return count


def verify_records(records: Iterator[Mapping[str, Any]]) -> VerifyReport:
    """Check an exported slice (JSON lines read back): every hash, and the links between consecutive entries."""
    report = VerifyReport()
    prev: Mapping[str, Any] | None = None
    for rec in records:
        report.entries += 1
        seq = int(rec["seq"])
        created = datetime.fromisoformat(rec["created_at"])
        recomputed = entry_hash(
            seq, created, rec["kind"], rec["repository"], rec["deployment_key"], rec["actor"], rec["data"],
            rec["prev_hash"],
        )  # fmt: skip
        if recomputed != rec["hash"]:
            report.findings.append(Finding(seq, "altered", "content does not match its stored hash"))
        if prev is not None:
            if seq != int(prev["seq"]) + 1:
                report.findings.append(Finding(seq, "missing", f"the export jumps from seq {prev['seq']} to {seq}"))
            elif rec["prev_hash"] != prev["hash"]:
                report.findings.append(Finding(seq, "chain_broken", "prev_hash is not the previous entry's hash"))
        prev = rec
        report.head_seq, report.head_hash = seq, rec["hash"]
    return report
