"""The facts the insights read are kept on the deployment row (migration 0011), on SQLite and PostgreSQL.

Migration 0011 fills them for deployments recorded before it; from then on the transitions keep them:
``record_decision`` copies the decision's headline and the change's first commit, ``note_human_review``
marks an allowed approve / reject / override. The end-to-end path (a real escalation answered by a
reviewer through the app) is in tests/test_escalation.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, Table, inspect, select

from github_app import db, deployments, insights
from github_app.db.models import Deployment
from github_app.insights import Window
from tests.test_insights_sql import _same

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _tables(engine) -> dict[str, Table]:
    meta = MetaData()
    meta.reflect(engine, only=["deployments", "decisions", "reviews", "history", "outcomes"])
    return meta.tables


def test_migration_0011_fills_the_facts_of_deployments_recorded_before_it(empty_database_url: str) -> None:
    engine = db.make_engine(empty_database_url)
    try:
        db.upgrade(engine, "0010")
        t = _tables(engine)
        firsts = {
            1: "2026-03-01T10:00:00Z",  # UTC written with Z
            2: "2026-03-01T12:30:00.250000+02:00",  # another zone: stored as UTC
            3: "2026-03-01T08:00:00",  # no zone: read as UTC, as the report read it
            4: "not a time",
            5: "2026-02-30T10:00:00+00:00",  # no such day
            6: None,
        }
        reviews = {  # (action, allowed) of each deployment's review attempts
            1: [("approve", False), ("approve", True)],  # refused first, then a reviewer
            2: [("approve", False)],  # only a refused one: the deployer, say
            3: [("waive", True)],  # a waiver is no answer
            4: [("override", True)],
            5: [("reject", True)],
        }
        with engine.begin() as conn:
            for n in range(1, 8):
                conn.execute(t["deployments"].insert().values(
                    id=n, key=f"o/r/{n}/production/1", repository="o/r", environment="production", sha=f"{n}" * 40,
                    run_id=n, created_at=T0 + n * H, state="answered", status_reports=0, pull_requests=[],
                    decision_id=100 + n if n != 7 else None, answer="approved", answered_at=T0 + n * H + H,
                ))  # fmt: skip
                if n != 7:  # 7: no decision recorded (a dead delivery)
                    conn.execute(t["decisions"].insert().values(
                        id=100 + n, deployment_id=n, created_at=T0 + n * H + timedelta(seconds=n), data={},
                        verdict=("go", "escalate", "no-go")[n % 3], action=("approve", "escalate", "reject")[n % 3],
                        risk=n / 10,
                    ))  # fmt: skip
                for action, allowed in reviews.get(n, []):
                    conn.execute(t["reviews"].insert().values(deployment_id=n, actor="someone", action=action,
                                                              allowed=allowed, reason="", created_at=T0 + n * H))  # fmt: skip
                if n in firsts:
                    features = {"commits": 2} | ({"first_commit_at": firsts[n]} if firsts[n] is not None else {})
                    conn.execute(t["history"].insert().values(deployment_id=f"o/r/{n}/production/1", repository="o/r",
                                                              environment="production", sha=f"{n}" * 40,
                                                              created_at=T0 + n * H, features=features))  # fmt: skip
        db.upgrade(engine)
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(Deployment.__table__)).all()}
        # the decision's headline, copied
        for n in range(1, 7):
            assert rows[n].verdict == ("go", "escalate", "no-go")[n % 3]
            assert rows[n].decided_action == ("approve", "escalate", "reject")[n % 3]
            assert rows[n].risk == n / 10 and rows[n].decided_at == T0 + n * H + timedelta(seconds=n)
        assert (rows[7].verdict, rows[7].decided_action, rows[7].risk, rows[7].decided_at) == (None, None, None, None)
        # a human answered only where an allowed approve, reject or override was recorded
        assert {n for n, r in rows.items() if r.human_reviewed} == {1, 4, 5}
        # the first commit: times in any zone as UTC; anything that is not a time, or no history, is none
        assert rows[1].first_commit_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        assert rows[2].first_commit_at == datetime(2026, 3, 1, 10, 30, 0, 250000, tzinfo=UTC)
        assert rows[3].first_commit_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        assert [rows[n].first_commit_at for n in (4, 5, 6, 7)] == [None] * 4

        # the report reads the migrated rows, and the database counts them as the Python definitions do
        window = Window(since=T0, until=T0 + 24 * H)
        python = insights.build(insights.load(engine, window), T0 + 24 * H).to_json()
        sql = insights.report(engine, window, T0 + 24 * H).to_json()
        _same(python, sql)
        assert python["gate_quality"]["deployments"] == 7 and python["gate_quality"]["decided"] == 6

        db.downgrade(engine, "0010")
        columns = {c["name"] for c in inspect(engine).get_columns("deployments")}
        assert not columns & {"verdict", "decided_action", "risk", "decided_at", "human_reviewed", "first_commit_at"}
    finally:
        engine.dispose()


def test_the_migrated_columns_match_the_model(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        migrated = {c["name"]: c for c in inspect(engine).get_columns("deployments")}
        for name in ("verdict", "decided_action", "risk", "decided_at", "human_reviewed", "first_commit_at"):
            assert name in migrated, name
            assert migrated[name]["nullable"] is (name != "human_reviewed"), name
    finally:
        engine.dispose()


def test_a_refused_or_waiving_review_never_marks_a_human_answer(database_url: str) -> None:
    """``note_human_review`` is the only way in, and it is set once: the escalation module calls it only for
    an allowed approve, reject or override (tests/test_escalation.py drives that through the app)."""
    from sqlalchemy.orm import Session

    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            dep_id = conn.execute(Deployment.__table__.insert().values(
                key="o/r/1/production/1", repository="o/r", environment="production", sha="a" * 40, run_id=1,
                created_at=T0, state="escalated", pull_requests=[], status_reports=0,
            )).inserted_primary_key[0]  # fmt: skip
        with Session(engine) as session, session.begin():
            assert deployments.note_human_review(session, dep_id) is True
        with Session(engine) as session, session.begin():
            assert deployments.note_human_review(session, dep_id) is False  # already set: nothing changes
        row = deployments.load(engine, "o/r/1/production/1")
        assert row is not None and row.human_reviewed is True and row.state == "escalated"
    finally:
        engine.dispose()
