"""Audit log: hash chain, atomicity with the caller, tamper detection, concurrent writers, export, CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from github_app import audit, db
from github_app.cli import cli
from github_app.db.models import AuditEntry, Waiver

T0 = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _fill(engine: Engine, n: int = 6) -> None:
    kinds = ["evaluation", "decision", "status_report", "review_attempt", "answer", "notification"]
    for i in range(n):
        with engine.begin() as conn:
            audit.append(
                conn, kinds[i % len(kinds)], repository="octo/shop", deployment_key=f"octo/shop/1/production/{i}",
                actor=None if i % 2 else "mona", data={"i": i, "score": 81.5, "reasons": ["r\u00e9sum\u00e9", "<b>"]},
                now=T0 + timedelta(minutes=i),
            )  # fmt: skip


def test_entries_chain_from_genesis_and_verify_clean(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert rows[2].created_at == T0 + timedelta(minutes=2)
    report = audit.verify(engine)
    assert report.ok, report.summary()
    assert (report.entries, report.head_seq, report.head_hash) == (6, 6, rows[-1].hash)


def test_append_commits_and_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(Waiver(repository="octo/shop", environment="production", rule_id="GNG-SEC-001", sha=None,
                           expires_at=now, reason="r", author="mona", created_at=now))  # fmt: skip
        audit.append(session, "waiver", actor="mona", data={"action": "add"})
        raise RuntimeError("the state change failed after the audit entry was written")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Waiver)).scalar_one() == 0
    with Session(engine) as session, session.begin():
        entry = audit.append(session, "waiver", actor="mona", data={"action": "add"})
    assert entry.seq == 1 and entry.id is not None
    assert audit.verify(engine).ok


def test_append_refuses_unknown_kind_naive_time_and_no_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(audit.AuditError, match="unknown audit kind"):
            audit.append(conn, "gossip", data={})
        with pytest.raises(audit.AuditError, match="naive"):
            audit.append(conn, "decision", data={}, now=datetime(2026, 1, 1))
        with pytest.raises(audit.AuditError, match="no JSON form"):
            audit.append(conn, "decision", data={"x": object()})
    with engine.connect() as conn:
        conn.commit()  # end the autobegun transaction so the check sees none
        assert not conn.in_transaction()
        with pytest.raises(audit.AuditError, match="open transaction"):
            audit.append(conn, "decision", data={})


def test_data_with_models_dates_and_non_finite_numbers_round_trips_and_verifies(engine: Engine) -> None:
    from rules.types import Waiver as WaiverModel

    w = WaiverModel(rule_id="GNG-SEC-001", environment="production", expires_at=T0, reason="r", author="mona")
    with engine.begin() as conn:
        entry = audit.append(conn, "waiver", data={"waiver": w, "when": T0, "nan": float("nan"), "tags": {"b", "a"}})
    assert entry.data["waiver"]["expires_at"].startswith("2026-03-02T09:30:00")
    assert entry.data["nan"] == "nan" and entry.data["tags"] == ["a", "b"]
    assert audit.verify(engine).ok


def _verify_cli(database_url: str, *args: str):
    return CliRunner().invoke(cli, ["audit", "verify", "--database-url", database_url, *args])


def test_updated_row_is_detected_by_the_cli(engine: Engine, database_url: str) -> None:
    _fill(engine)
    assert _verify_cli(database_url).exit_code == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4"))
    result = _verify_cli(database_url)
    assert result.exit_code == 1
    assert "first bad entry is seq 4" in result.output
    assert "altered" in result.output


def test_updated_data_with_recomputed_hash_breaks_the_link_to_the_next_entry(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session:
        row = session.scalars(select(AuditEntry).where(AuditEntry.seq == 3)).one()
    forged = dict(row.data, score=99.0)
    new_hash = audit.entry_hash(3, row.created_at, row.kind, row.repository, row.deployment_key, row.actor,
                                forged, row.prev_hash)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET data = :d, hash = :h WHERE seq = 3"),
                     {"d": json.dumps(forged), "h": new_hash})  # fmt: skip
    report = audit.verify(engine)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert report.findings[0].problem == "chain_broken"


def test_deleted_middle_first_and_renumbered_rows_are_detected(engine: Engine) -> None:
    _fill(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    report = audit.verify(engine)
    assert [(f.seq, f.problem) for f in report.findings] == [(3, "missing")]
    assert "seq 3 removed" in report.summary()

    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3"))
    report = audit.verify(engine)
    assert report.first_bad_seq == 3
    assert {f.problem for f in report.findings} >= {"altered"}

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 1"))
    assert audit.verify(engine).first_bad_seq == 1


def test_swapped_rows_are_detected(engine: Engine, database_url: str) -> None:
    _fill(engine)
    # swap the sequence numbers of two entries (through a free value: seq is unique)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 5"))
        conn.execute(text("UPDATE audit_log SET seq = 5 WHERE seq = -1"))
    result = _verify_cli(database_url)
    assert result.exit_code == 1
    assert "first bad entry is seq 2" in result.output


def test_rows_swapped_wholesale_are_detected_by_their_storage_order(engine: Engine) -> None:
    _fill(engine)
    cols = "seq, created_at, kind, repository, deployment_key, actor, data, prev_hash, hash"
    read = cols.replace("data", "CAST(data AS TEXT) AS data")
    with engine.begin() as conn:
        a = conn.execute(text(f"SELECT {read} FROM audit_log WHERE seq = 2")).one()._mapping
        b = conn.execute(text(f"SELECT {read} FROM audit_log WHERE seq = 5")).one()._mapping
        conn.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 5"))
        conn.execute(text("UPDATE audit_log SET seq = -2 WHERE seq = 2"))
        sets = ", ".join(f"{c} = :{c}" for c in cols.split(", "))
        conn.execute(text(f"UPDATE audit_log SET {sets} WHERE seq = -1"), dict(a))
        conn.execute(text(f"UPDATE audit_log SET {sets} WHERE seq = -2"), dict(b))
    report = audit.verify(engine)
    assert not report.ok
    assert report.findings[0].problem == "reordered"
    assert report.first_bad_seq == 3


def test_removing_the_newest_entries_is_caught_with_an_anchor(engine: Engine, database_url: str) -> None:
    _fill(engine)
    first = _verify_cli(database_url)
    anchor = first.output.split("--expect-head ")[1].strip()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 5"))
    assert audit.verify(engine).ok  # a chain alone cannot tell that its end is gone
    result = _verify_cli(database_url, "--expect-head", anchor)
    assert result.exit_code == 1
    assert "removed from the end" in result.output


def test_concurrent_appends_from_threads_form_one_valid_chain(engine: Engine) -> None:
    threads, per_thread = 6, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with engine.begin() as conn:
                    # some other work in the same transaction first, as the gate would do
                    conn.execute(select(func.count()).select_from(Waiver))
                    audit.append(conn, "evaluation", actor=f"w{n}", data={"thread": n, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not errors, errors
    report = audit.verify(engine)
    assert report.ok, report.summary()
    assert report.entries == threads * per_thread
    assert report.head_seq == threads * per_thread


def test_export_jsonl_and_csv_since_a_date_and_verify_the_file(engine: Engine, database_url: str, tmp_path: Path) -> None:
    _fill(engine)
    buf = io.StringIO()
    assert audit.export(engine, T0 + timedelta(minutes=2), "jsonl", buf) == 4
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == [3, 4, 5, 6]
    assert lines[0]["data"]["reasons"] == ["r\u00e9sum\u00e9", "<b>"]
    assert lines[1]["prev_hash"] == lines[0]["hash"]

    out = tmp_path / "audit.csv"
    result = CliRunner().invoke(
        cli, ["audit", "export", "--database-url", database_url, "--since", "2026-03-02", "--format", "csv", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 6 and json.loads(rows[0]["data"])["i"] == 0
    assert CliRunner().invoke(cli, ["audit", "verify", "--file", str(out)]).exit_code == 0

    jsonl = tmp_path / "audit.jsonl"
    jsonl.write_text(buf.getvalue().replace('"score":81.5', '"score":91.5', 1), encoding="utf-8")
    tampered = CliRunner().invoke(cli, ["audit", "verify", "--file", str(jsonl)])
    assert tampered.exit_code == 1 and "seq 3" in tampered.output

    none = CliRunner().invoke(cli, ["audit", "export", "--database-url", database_url, "--since", "2030-01-01"])
    assert none.exit_code == 0 and none.stdout == ""
    bad = CliRunner().invoke(cli, ["audit", "export", "--database-url", database_url, "--since", "yesterday"])
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_empty_log_verifies(engine: Engine, database_url: str) -> None:
    result = _verify_cli(database_url)
    assert result.exit_code == 0 and "intact: 0 entries" in result.output


def test_a_decision_entry_explains_the_decision_exactly_as_made(engine: Engine) -> None:
    from rules.pipeline import evaluate
    from rules.policy import default_policy, effective
    from rules.samples import clean_evidence
    from rules.types import Decision

    policy = default_policy()
    decision = evaluate(clean_evidence(), policy, "production", T0)
    env_policy = effective(policy, "production").model_dump(mode="json")
    with Session(engine) as session, session.begin():
        audit.append_decision(session, decision, deployment_key="octo/shop/1/production/1", policy_sha="c" * 40,
                              effective_policy=env_policy)  # fmt: skip
    with Session(engine) as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert entry.kind == "decision" and entry.repository == decision.repository
    assert entry.data["policy_sha"] == "c" * 40 and entry.data["effective_policy"] == env_policy
    assert entry.data["model_version"] == decision.risk.model_version
    replayed = Decision.model_validate(entry.data["decision"])
    assert replayed == decision  # evidence, findings and scores come back unchanged
    assert audit.verify(engine).ok


@pytest.mark.parametrize(("content", "needle"), [
    (b"garbage\n", "neither JSON lines nor the CSV"),
    (b"seq,when\n1,2026-01-01\n", "neither JSON lines nor the CSV"),
    (b'{"seq": 1, "kind": "waiver"}\n', "lacks created_at"),
    ("\xff\xfeseq".encode("latin-1"), "not UTF-8"),
    ((b"seq,created_at,kind,repository,deployment_key,actor,data,prev_hash,hash\n"
      b"one,2026-01-01T00:00:00+00:00,waiver,,,,{},,x\n"), "malformed"),
])  # fmt: skip
def test_a_file_that_is_not_an_export_never_verifies_as_intact(tmp_path: Path, content: bytes, needle: str) -> None:
    # an auditor handed a corrupted or foreign file must not read "Audit log intact"
    f = tmp_path / "audit.export"
    f.write_bytes(content)
    result = CliRunner().invoke(cli, ["audit", "verify", "--file", str(f)], catch_exceptions=False)
    assert result.exit_code == 1 and "Audit log intact" not in result.output
    assert needle in result.output
