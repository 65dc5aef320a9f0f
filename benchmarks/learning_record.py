"""What reading one outcome record costs the gate: ``github_app.learning.track_record`` over a full window.

The history of one repository and environment is filled with ``--rows`` decided deployments inside the
180-day window (each with its deployment row, every third one escalated and approved by a reviewer, an
outcome on most), plus as many rows of another repository, then the record the gate reads before every
decision is read ``--reads`` times. Reported: CPU and wall time per read (median), and the record read.

    .venv/bin/python benchmarks/learning_record.py                 # SQLite in a temporary directory
    .venv/bin/python benchmarks/learning_record.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

On PostgreSQL it works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from github_app import db, learning
from github_app.db.models import Deployment, HistoryRow, Review
from rules.policy import Learning


def fill(engine, rows: int, now: datetime) -> None:
    """``rows`` decided deployments per repository over the last 170 days, as the gate stores them."""
    for repository in ("acme/api", "acme/other"):
        deployments, history, reviews = [], [], []
        for i in range(rows):
            when = now - timedelta(days=170) + timedelta(minutes=i * 170 * 24 * 60 // rows)
            key, sha = f"{repository}#{i}/production/{i}", f"{i:040x}"
            escalated = i % 3 == 0
            deployments.append({"key": key, "repository": repository, "environment": "production", "sha": sha, "run_id": i,
                                    "created_at": when, "creator": "dora", "state": "done", "answer": "approved",
                                    "answered_at": when})  # fmt: skip
            history.append({
                "deployment_id": key, "repository": repository, "environment": "production", "sha": sha, "created_at": when,
                "outcome": ("failure" if i % 50 == 0 else "success") if i % 7 else None,
                "outcome_at": when + timedelta(hours=1),
                "features": {"additions": 40 + i % 900, "deletions": 3, "files_changed": 4,
                          "major_findings": ["GNG-CHG-001"] if escalated else [],
                          "verdict": "escalate" if escalated else "go",
                          "action": "escalate" if escalated else "approve"},
            })  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(Deployment), deployments)
            conn.execute(insert(HistoryRow), history)
            ids = dict(conn.execute(Deployment.__table__.select().with_only_columns(Deployment.key, Deployment.id)
                                    .where(Deployment.repository == repository)).all())  # fmt: skip
            for i in range(0, rows, 3):
                reviews.append({"deployment_id": ids[f"{repository}#{i}/production/{i}"], "delivery_id": f"d{i}",
                                    "actor": "rita", "action": "approve", "allowed": True, "reason": "", "created_at": now})  # fmt: skip
            conn.execute(insert(Review), reviews)


def measure(database_url: str, rows: int, reads: int) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    now = datetime.now(UTC)
    fill(engine, rows, now)
    settings = Learning()
    cpu, wall = [], []
    record = None
    for _ in range(reads):
        c0, w0 = time.process_time(), time.perf_counter()
        record = learning.track_record(engine, "acme/api", "production", "acme/api#new/production/1", now, settings)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    engine.dispose()
    assert record is not None
    rec = record["GNG-CHG-001"]
    print(f"{engine.dialect.name}: {rows} rows in the window; per read median CPU {statistics.median(cpu) * 1000:.1f} ms, "
          f"wall {statistics.median(wall) * 1000:.1f} ms ({reads} reads)")  # fmt: skip
    print(f"  GNG-CHG-001: flagged {rec.flagged}, reviewed {rec.reviewed}, approved {rec.approved}, "
          f"deployed {rec.deployed}, failed {rec.failed}, error {rec.error}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=learning.MAX_ROWS)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (a schema of its own is used)")
    args = parser.parse_args()
    if args.postgres:
        from ingest import drop_pg_schema, fresh_pg_schema

        url, schema = fresh_pg_schema(args.postgres)
        try:
            measure(url, args.rows, args.reads)
        finally:
            drop_pg_schema(args.postgres, schema)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(f"sqlite:///{tmp}/bench.db", args.rows, args.reads)


if __name__ == "__main__":
    main()
