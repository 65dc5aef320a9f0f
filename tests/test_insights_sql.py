"""The report counted by the database equals the Python definitions (``insights.build`` over ``insights.load``).

``insights.report`` (what the API, the dashboard and ``gonogo report`` show) runs one SQL statement
(github_app/insights_sql.py); ``build(load(...))`` computes the same figures in Python from every row of
the window and follows docs/insights.md line by line. Both run here on the same database, on the seeded
data and on hand-made edge cases, on SQLite and on PostgreSQL (GONOGO_DATABASE_URL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, update

from github_app import db, insights
from github_app.db.models import DecisionRecord, Deployment, HistoryRow, Outcome, Review
from github_app.insights import Window
from tests.helpers import migration

first_commit_time = migration("0011").first_commit_time  # how a first-commit text became the row's column

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


def _same(python: Any, sql: Any, path: str = "report") -> None:
    """Equal, except sums of floats, which the database adds in another order (last-digit differences)."""
    if isinstance(python, dict):
        assert isinstance(sql, dict) and python.keys() == sql.keys(), path
        for key in python:
            _same(python[key], sql[key], f"{path}.{key}")
    elif isinstance(python, list):
        assert isinstance(sql, list) and len(python) == len(sql), path
        for i, (a, b) in enumerate(zip(python, sql, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(python, float) and path.endswith((".predicted", ".brier_score")):
        assert sql == pytest.approx(python, rel=1e-12, abs=1e-15), path
    else:
        assert python == sql and type(python) is type(sql), (path, python, sql)


def _both(engine: Engine, window: Window, now: datetime) -> dict[str, Any]:
    python = insights.build(insights.load(engine, window), now).to_json()
    sql = insights.report(engine, window, now).to_json()
    _same(python, sql)
    return sql


def test_the_database_counts_the_seeded_history_like_the_python_definitions(database_url: str) -> None:
    from tests.insights_data import seed

    engine = db.make_engine(database_url)
    now = datetime(2026, 6, 10, 14, 23, 17, 250000, tzinfo=UTC)
    seeded = seed(engine, deployments=900, days=60, now=now, with_audit=False)
    windows = [
        insights.window_from("30d", None, now),
        insights.window_from("60d", None, now, repository="acme/shop", environment="production"),
        insights.window_from("7d", None, now, environment="staging"),
        insights.window_from("45d", "20d", now, repository="acme/payments"),  # ends in the past: later outcomes count
        insights.window_from("2026-01-01", "2026-02-01", now),  # before the first deployment: an empty window
    ]
    reports = [_both(engine, w, now) for w in windows]
    engine.dispose()

    month = reports[0]
    assert month["gate_quality"]["deployments"] > 400 and len(month["groups"]) == 6
    assert month["gate_quality"]["escaped_failures"] > 0 and month["gate_quality"]["false_blocks"] > 0
    assert month["dora"]["restores"] > 0 and month["dora"]["lead_time_samples"] > 0
    assert month["gate_quality"]["waiting_now"] == seeded.escalated_waiting
    assert sum(month["answer_times"]["human"]) > 0 and sum(month["answer_times"]["automatic"]) > 0
    empty = reports[-1]
    assert empty["gate_quality"]["deployments"] == 0 and empty["dora"]["frequency_category"] == "none"
    assert empty["groups"] == [] and empty["gate_quality"]["share_escalated"] is None


def _store(engine: Engine, rows: list[dict[str, Any]], outcomes: list[tuple[str, str, str, datetime]]) -> None:
    """Deployments with their decision, reviews and first commit, and outcomes (repository o/r)."""
    with engine.begin() as conn:
        for n, r in enumerate(rows):
            created = r["at"]
            answered = created + r.get("after", timedelta(seconds=20)) if r.get("answer") else None
            dep_id = conn.execute(insert(Deployment).values(
                key=f"o/r/{n}/{r.get('env', 'production')}/1", repository="o/r", environment=r.get("env", "production"),
                sha=r["sha"], run_id=n, created_at=created, state="answered" if r.get("answer") else "escalated",
                answer=r.get("answer"), answered_at=answered,
            ).returning(Deployment.id)).scalar_one()  # fmt: skip
            if r.get("action"):
                verdict = {"approve": "go", "escalate": "escalate", "reject": "no-go"}[r["action"]]
                decision = conn.execute(insert(DecisionRecord).values(
                    deployment_id=dep_id, created_at=created + timedelta(seconds=7, microseconds=123457),
                    verdict=verdict, action=r["action"], risk=r.get("risk", 0.2), data={},
                ).returning(DecisionRecord.id)).scalar_one()  # fmt: skip
                # what deployments.record_decision copies onto the row
                conn.execute(update(Deployment).where(Deployment.id == dep_id).values(
                    decision_id=decision, verdict=verdict, decided_action=r["action"], risk=r.get("risk", 0.2),
                    decided_at=created + timedelta(seconds=7, microseconds=123457),
                    first_commit_at=first_commit_time(r.get("first")),
                ))  # fmt: skip
            for actor, allowed in r.get("reviews", ()):
                conn.execute(insert(Review).values(deployment_id=dep_id, actor=actor, action="approve", allowed=allowed,
                                                   refusal=None if allowed else "not a reviewer",
                                                   created_at=answered or created))  # fmt: skip
                if allowed:  # deployments.note_human_review
                    conn.execute(update(Deployment).where(Deployment.id == dep_id).values(human_reviewed=True))
            if "first" in r:
                conn.execute(insert(HistoryRow).values(deployment_id=f"o/r/{n}/{r.get('env', 'production')}/1",
                                                       repository="o/r", environment=r.get("env", "production"),
                                                       sha=r["sha"], created_at=created,
                                                       features={"first_commit_at": r["first"]}))  # fmt: skip
        for i, (env, sha, outcome, at) in enumerate(outcomes):
            conn.execute(insert(Outcome).values(repository="o/r", environment=env, sha=sha, outcome=outcome,
                                                source="deployment_status", source_key=f"edge:{i}", observed_at=at,
                                                detail={}))  # fmt: skip


def test_edge_cases_count_the_same_in_the_database(database_url: str) -> None:
    a, b, c, d, e, f, g, x = (ch * 40 for ch in "abcdef0e")
    iso = (T0 - 5 * H).isoformat()
    rows = [
        # approved by the gate, then an incident: an escaped failure (and caught = 0 for it)
        {"at": T0, "sha": a, "action": "approve", "answer": "approved", "risk": 0.15, "first": iso},
        # rejected, then the unchanged sha went out and only succeeded: a false rejection
        {"at": T0 + H, "sha": b, "action": "reject", "answer": "rejected", "risk": 0.7, "first": iso},
        {"at": T0 + 3 * H, "sha": b, "action": "approve", "answer": "approved", "risk": 0.25},
        # rejected, redeployed, and that failed: not a false block
        {"at": T0 + 2 * H, "sha": c, "action": "reject", "answer": "rejected", "risk": 0.9},
        {"at": T0 + 4 * H, "sha": c, "action": "approve", "answer": "approved", "risk": 0.29},
        # escalated, a reviewer approved (a refused review first), only succeeded: a needless escalation
        {"at": T0 + 5 * H, "sha": d, "action": "escalate", "answer": "approved", "after": 2 * H, "risk": 0.4,
         "reviews": [("mallory", False), ("rita", True)], "first": "2026-03-01T10:00:00Z"},
        # escalated and waiting; another escalation only a refused reviewer touched, expired as rejected
        {"at": T0 + 6 * H, "sha": e, "action": "escalate", "risk": 0.5},
        {"at": T0 + 7 * H, "sha": f, "action": "escalate", "answer": "rejected", "after": 30 * H, "risk": 0.45,
         "reviews": [("mallory", False)]},
        # no decision yet; a first commit time that is not a time
        {"at": T0 + 8 * H, "sha": g, "first": "not a time"},
        # two requests of one sha at the same instant, and one a microsecond later (ties go to the newest)
        {"at": T0 + 9 * H, "sha": x, "action": "approve", "answer": "approved", "risk": 0.05,
         "first": (T0 + 8 * H + timedelta(microseconds=1)).isoformat()},
        {"at": T0 + 9 * H, "sha": x, "action": "approve", "answer": "approved", "risk": 0.05},
        {"at": T0 + 9 * H + timedelta(microseconds=1), "sha": x, "action": "approve", "answer": "approved", "risk": 0.95},
        # staging: a failure never restored
        {"at": T0 + 2 * H, "sha": a, "env": "staging", "action": "approve", "answer": "approved", "risk": 0.1},
    ]
    outcomes = [
        ("production", a, "success", T0 + timedelta(minutes=10)),
        ("production", a, "incident", T0 + timedelta(minutes=50)),  # down from here ...
        ("production", a, "failure", T0 + timedelta(minutes=55)),  # ... still down (the same run)
        ("production", b, "success", T0 + 1.5 * H),  # before the second request: the rejected one's
        ("production", b, "success", T0 + 3.2 * H),  # ... restored here (any sha)
        ("production", c, "rollback", T0 + 4.5 * H),
        ("production", d, "success", T0 + 7.5 * H),
        ("production", x, "success", T0 + 9 * H),  # at the very instant of the tied requests
        ("production", x, "success", T0 + 9 * H + timedelta(microseconds=1)),
        ("production", x, "incident", T0 + 30 * H),
        ("staging", a, "failure", T0 + 3 * H),
        ("staging", "9" * 40, "failure", T0 + 4 * H),  # an outcome of no deployment of the window
        ("production", a, "success", T0 - 2 * H),  # before the window: ignored
    ]
    engine = db.make_engine(database_url)
    _store(engine, rows, outcomes)
    now = T0 + 48 * H + timedelta(microseconds=500)
    window = Window(since=T0, until=T0 + 24 * H)
    r = _both(engine, window, now)
    one = _both(engine, Window(since=T0, until=T0 + 24 * H, repository="o/r", environment="production"), now)
    empty = _both(engine, Window(since=T0 + 30 * H, until=T0 + 40 * H), now)  # outcomes but no deployment
    engine.dispose()

    gate, dora = r["gate_quality"], r["dora"]
    assert gate["deployments"] == 13 and gate["decided"] == 12
    assert gate["escaped_failures"] == 4  # a; c's redeploy (rollback); the newest x (incident); a in staging
    assert gate["false_rejections"] == 1 and gate["needless_escalations"] == 1 and gate["false_blocks"] == 2
    assert gate["waiting_now"] == 1 and gate["answer_seconds_human_median"] == 7200
    # staging's run of two; x's incident (T0 + 30 h) is after the window's end, so the later window's
    assert dora["restores"] == 2 and dora["unrestored_failures"] == 1
    # production: down from a's incident (0:50) to b's success (1:30), from c's rollback (4:30) to d's (7:30)
    assert dora["time_to_restore_seconds_median"] == (40 * 60 + 3 * 3600) / 2
    assert [w["verdicts"]["none"] for w in r["weeks"]] == [1]
    assert one["dora"]["unrestored_failures"] == 0 and one["gate_quality"]["deployments"] == 12
    assert empty["gate_quality"]["deployments"] == 0 and empty["dora"]["unrestored_failures"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_crowded_histories_with_ties_count_the_same_in_the_database(database_url: str, seed: int) -> None:
    """Few shas, two environments and whole hours: requests of one target at the same instant, outcomes at
    the instant of a request, failures and successes at the same instant, outcomes before the window and of
    no deployment. The statement attributes and finds restore runs with window functions whose order
    decides every tie; the Python definitions must agree on all of them.
    """
    import random

    rnd = random.Random(seed)
    shas, envs = [ch * 40 for ch in "abcd"], ["production", "staging"]
    rows = [{"at": T0 + rnd.randrange(40) * H, "sha": rnd.choice(shas), "env": rnd.choice(envs),
             "action": rnd.choice(["approve", "escalate", "reject", None]),
             "answer": rnd.choice(["approved", "rejected", None]), "risk": rnd.random()} for _ in range(120)]  # fmt: skip
    outcomes = [(rnd.choice(envs), rnd.choice([*shas, "e" * 40]),
                 rnd.choice(["success", "success", "failure", "failure", "rollback", "incident"]),
                 T0 + rnd.randrange(-5, 45) * H) for _ in range(300)]  # fmt: skip
    engine = db.make_engine(database_url)
    _store(engine, rows, outcomes)
    for since, until in ((0, 48), (3, 20), (20, 21), (-10, 60)):
        _both(engine, Window(since=T0 + since * H, until=T0 + until * H), T0 + 50 * H)
        _both(engine, Window(since=T0 + since * H, until=T0 + until * H, environment="staging"), T0 + 50 * H)
    engine.dispose()


def test_a_first_commit_time_that_is_no_time_has_no_lead_time(database_url: str) -> None:
    """Migration 0011 reads no time from it (SQLite would roll Feb 30th over, PostgreSQL would refuse it)."""
    rows = [
        {"at": T0, "sha": "a" * 40, "action": "approve", "answer": "approved", "first": "2026-02-30T10:00:00+00:00"},
        {"at": T0 + H, "sha": "b" * 40, "action": "approve", "answer": "approved", "first": (T0 - 2 * H).isoformat()},
    ]
    outcomes = [("production", "a" * 40, "success", T0 + 0.5 * H), ("production", "b" * 40, "success", T0 + 2 * H)]
    engine = db.make_engine(database_url)
    _store(engine, rows, outcomes)
    r = _both(engine, Window(since=T0, until=T0 + 24 * H), T0 + 24 * H)
    engine.dispose()
    assert r["dora"]["lead_time_samples"] == 1 and r["dora"]["lead_time_seconds_median"] == 4 * 3600


def test_the_filter_menus_step_through_the_index_to_the_same_lists(database_url: str) -> None:
    """``browse.choices`` walks the indexes value to value; it must list what SELECT DISTINCT lists."""
    from sqlalchemy import select

    from github_app import browse

    engine = db.make_engine(database_url)
    assert list(browse.choices(engine)) == [[], []]
    names = [("o/r", "production"), ("o/r-2", "prod"), ("a/b", "production"), ("o/r", "staging"), ("A/b", "Prod")]
    with engine.begin() as conn:
        for n, (repo, env) in enumerate(names * 2):
            conn.execute(insert(Deployment).values(key=f"k{n}", repository=repo, environment=env, sha="a" * 40, run_id=n,
                                                   created_at=T0 + n * H, state="evaluating"))  # fmt: skip
        ordered = [list(conn.execute(select(column).distinct().order_by(column)).scalars())
                   for column in (Deployment.repository, Deployment.environment)]  # fmt: skip
    menus = list(browse.choices(engine))
    engine.dispose()
    assert menus == ordered
    assert [len(m) for m in menus] == [4, 4] and menus[0][-1] == "o/r-2"


def test_restore_runs_cost_in_proportion_to_the_outcomes(database_url: str) -> None:
    """A long history of one environment: failures and successes alternating, each its own run.

    The runs were once found by joining the failures with the successes of the next segment; PostgreSQL
    planned that as a join on the environment alone and filtered the segment after it, so a year of one
    busy environment (100,000 outcomes) compared 310 million pairs and a 365-day report took 40 s. The
    figures must stay those of the Python definitions, and on PostgreSQL no step of the plan may handle
    more than a few rows per outcome.
    """
    import json

    from sqlalchemy import text

    n = 1200
    rows = [{"at": T0, "sha": "a" * 40, "action": "approve", "answer": "approved"}]
    outcomes = [("production", "a" * 40, "failure" if i % 2 else "success", T0 + (i + 1) * timedelta(minutes=1))
                for i in range(n)]  # fmt: skip
    engine = db.make_engine(database_url)
    _store(engine, rows, outcomes)
    window = Window(since=T0, until=T0 + 48 * H)
    r = _both(engine, window, T0 + 48 * H)
    assert r["dora"]["restores"] == n // 2 - 1 and r["dora"]["unrestored_failures"] == 1
    assert r["dora"]["time_to_restore_seconds_median"] == 60
    if engine.dialect.name == "postgresql":
        from github_app import insights_sql

        stmt, params = insights_sql.statement(window, "postgresql")  # every part of the report
        sql = str(stmt.params(params).compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            plan = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql.replace("%%", "%").replace(":", r"\:"))).scalar_one()
        plan = json.loads(plan) if isinstance(plan, str) else plan

        def handled(node: dict[str, Any]) -> int:
            own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get("Rows Removed by Join Filter", 0)
            return max([own, *(handled(child) for child in node.get("Plans", ()))])

        assert handled(plan[0]["Plan"]) <= 4 * n, "a step of the plan handles rows in proportion to outcomes squared"
    engine.dispose()


def test_a_past_window_counts_only_the_failures_observed_in_it(database_url: str) -> None:
    """Time to restore is over failures observed in the window (docs/insights.md): a failure after the
    window's end, restored or not, belongs to a later window, not to this month's figures."""
    a = "a" * 40
    rows = [{"at": T0, "sha": a, "action": "approve", "answer": "approved"}]
    outcomes = [
        ("production", a, "failure", T0 + H),  # in the window, restored after its end: counted
        ("production", a, "success", T0 + 30 * H),
        ("production", a, "incident", T0 + 40 * H),  # after the window: restored later
        ("production", a, "success", T0 + 41 * H),
        ("staging", a, "failure", T0 + 50 * H),  # after the window, never restored
    ]
    engine = db.make_engine(database_url)
    _store(engine, rows, outcomes)
    past = _both(engine, Window(since=T0, until=T0 + 24 * H), T0 + 60 * H)
    later = _both(engine, Window(since=T0 + 24 * H, until=T0 + 60 * H), T0 + 60 * H)
    engine.dispose()
    assert past["dora"]["restores"] == 1 and past["dora"]["unrestored_failures"] == 0
    assert past["dora"]["time_to_restore_seconds_median"] == 29 * 3600
    assert later["dora"]["restores"] == 1 and later["dora"]["unrestored_failures"] == 1
    assert later["dora"]["time_to_restore_seconds_median"] == 3600
