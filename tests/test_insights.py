"""Gate quality and DORA figures: the pure computation on hand-made facts, and the load from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, update

from github_app import db, deployments, insights
from github_app.db.models import DecisionRecord, Deployment, HistoryRow, Review
from github_app.features.outcomes import record_outcome
from github_app.insights import DeploymentFact, OutcomeFact, Window

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


def fact(n: int, *, sha: str | None = None, at: datetime | None = None, action: str | None = "approve",
         answer: str | None = "approved", human: bool = False, risk: float | None = 0.1,
         answer_after: timedelta = timedelta(seconds=20), first_commit: timedelta | None = 5 * H,
         env: str = "production") -> DeploymentFact:  # fmt: skip
    created = at or T0 + n * H
    verdict = {"approve": "go", "escalate": "escalate", "reject": "no-go", None: None}[action]
    return DeploymentFact(
        id=n, key=f"o/r/{n}/{env}/1", repository="o/r", environment=env, sha=sha or f"{n:040x}", created_at=created,
        answer=answer, answered_at=created + answer_after if answer else None, verdict=verdict, action=action,
        risk=risk, decided_at=created + timedelta(seconds=10) if action else None, answered_by_human=human,
        first_commit_at=created - first_commit if first_commit is not None else None,
    )  # fmt: skip


def out(d: DeploymentFact, outcome: str, after: timedelta = timedelta(minutes=10)) -> OutcomeFact:
    return OutcomeFact(d.repository, d.environment, d.sha, outcome, d.created_at + after)


def test_an_outcome_belongs_to_the_newest_deployment_of_its_sha_requested_before_it() -> None:
    first = fact(1, sha="a" * 40, action="reject", answer="rejected")
    again = fact(3, sha="a" * 40)
    results = insights.attribute([first, again], [out(first, "success", timedelta(minutes=30)), out(again, "success")])
    # observed before the second request: the first one's; observed after: the second's
    assert results[1].deployed_at == first.created_at + timedelta(minutes=30)
    assert results[3].deployed_at == again.created_at + timedelta(minutes=10)
    before_any = OutcomeFact("o/r", "production", "a" * 40, "failure", first.created_at - H)
    assert not any(r.failed for r in insights.attribute([first, again], [before_any]).values())


def test_gate_quality_counts_escapes_false_blocks_waits_and_catches() -> None:
    now = T0 + 100 * H
    auto_ok = fact(1, risk=0.05)
    auto_escaped = fact(2, risk=0.15)
    rejected = fact(3, sha="b" * 40, action="reject", answer="rejected", risk=0.7)
    redeployed = fact(4, sha="b" * 40, risk=0.2)  # the rejected sha again, unchanged, and fine
    needless = fact(5, action="escalate", human=True, answer_after=2 * H, risk=0.4)
    escalated_failed = fact(6, action="escalate", human=True, answer_after=4 * H, risk=0.45)
    waiting = fact(7, action="escalate", answer=None, risk=0.5)
    expired = fact(8, action="escalate", answer="rejected", answer_after=48 * H, risk=0.5)
    ds = [auto_ok, auto_escaped, rejected, redeployed, needless, escalated_failed, waiting, expired]
    outcomes = [out(auto_ok, "success"), out(auto_escaped, "success"), out(auto_escaped, "incident", H),
                out(redeployed, "success"), out(needless, "success", 3 * H), out(escalated_failed, "rollback", 5 * H)]
    results = insights.attribute(ds, outcomes)
    g = insights.gate_quality(ds, results, now)

    assert (g.deployments, g.decided, g.approved_automatically, g.escalated, g.rejected_automatically) == (8, 8, 3, 4, 1)
    assert g.share_escalated == pytest.approx(0.5)
    assert g.approved == 5 and g.escaped_failures == 2 and g.escaped_failure_rate == pytest.approx(0.4)
    # the rejected sha went out unchanged and succeeded; the escalation a reviewer approved only succeeded
    assert (g.false_rejections, g.needless_escalations, g.false_blocks) == (1, 1, 2)
    assert g.answer_seconds_automatic_median == pytest.approx(20)
    assert g.answer_seconds_human_median == pytest.approx(3 * 3600)  # expiry is not a human answer
    assert g.reviewer_wait_seconds_median == pytest.approx((2 * 3600 - 10 + 4 * 3600 - 10) / 2)
    assert g.waiting_now == 1 and g.oldest_waiting_seconds == pytest.approx((now - waiting.created_at).total_seconds() - 10)
    # failures that went out: auto_escaped (approved automatically) and escalated_failed (asked a human first)
    assert (g.failures_observed, g.caught, g.catch_rate) == (2, 1, 0.5)
    by_bin = {b.low: b for b in g.calibration if b.deployments}
    assert by_bin[0.0].deployments == 1 and by_bin[0.0].observed == 0
    assert by_bin[0.1].deployments == 1 and by_bin[0.1].observed == 1 and by_bin[0.1].predicted == pytest.approx(0.15)
    assert by_bin[0.4].deployments == 2 and by_bin[0.4].observed == pytest.approx(0.5)
    assert len(g.calibration) == 10 and g.brier_score is not None and 0 < g.brier_score < 1


def test_dora_lead_time_failure_rate_restore_and_frequency() -> None:
    window = Window(since=T0, until=T0 + timedelta(days=14))
    ok1 = fact(1, first_commit=4 * H)
    ok2 = fact(2, first_commit=10 * H)
    failed = fact(30, first_commit=None)
    fixed = fact(50, first_commit=2 * H)
    unknown = fact(40)  # approved, nothing heard since
    ds = [ok1, ok2, failed, fixed, unknown]
    outcomes = [out(ok1, "success"), out(ok2, "success"), out(failed, "success"), out(failed, "failure", timedelta(minutes=1000)),
                out(fixed, "success")]  # fmt: skip
    results = insights.attribute(ds, outcomes)
    d = insights.dora(ds, results, outcomes, window)
    assert d.successful_deployments == 4 and d.deployments_with_outcome == 4 and d.failed_deployments == 1
    assert d.change_failure_rate == pytest.approx(0.25)
    # lead time per successful deployment from its first commit: 4h10m, 10h10m, 2h10m (failed has no compare)
    assert d.lead_time_samples == 3 and d.lead_time_seconds_median == pytest.approx((4 * 60 + 10) * 60)
    # down from the failure (1000 min after failed's request) until fixed's success
    down = failed.created_at + timedelta(minutes=1000)
    assert d.restores == 1 and d.time_to_restore_seconds_median == pytest.approx(
        (fixed.created_at + timedelta(minutes=10) - down).total_seconds())
    assert d.unrestored_failures == 0
    assert d.deployments_per_week == pytest.approx(2.0) and d.deployment_days == 3
    assert d.frequency_category == "weekly"


def test_frequency_categories_follow_four_keys_buckets() -> None:
    window = Window(since=T0, until=T0 + timedelta(days=28))
    daily = [T0 + timedelta(days=d) for d in range(28) if d % 7 < 5]
    weekly = [T0 + timedelta(days=7 * w) for w in range(4)]
    monthly = [T0 + timedelta(days=3)]
    assert insights.frequency_category(daily, window) == "daily"
    assert insights.frequency_category(weekly, window) == "weekly"
    assert insights.frequency_category(monthly, window) == "monthly"
    assert insights.frequency_category([T0], Window(since=T0, until=T0 + timedelta(days=120))) == "yearly"
    assert insights.frequency_category([], window) == "none"


def test_a_run_of_failures_is_restored_once_and_an_open_one_is_counted() -> None:
    o = [OutcomeFact("o/r", "production", "a", "failure", T0), OutcomeFact("o/r", "production", "a", "incident", T0 + H),
         OutcomeFact("o/r", "production", "b", "success", T0 + 3 * H),
         OutcomeFact("o/r", "staging", "c", "rollback", T0 + 2 * H)]  # fmt: skip
    durations, open_failures = insights.restore_times(o, T0)
    assert durations == [3 * 3600] and open_failures == 1


def test_weeks_and_answer_time_distribution() -> None:
    window = Window(since=T0, until=T0 + timedelta(days=14))
    ds = [fact(1), fact(2, action="escalate", human=True, answer_after=2 * H), fact(200, action="reject", answer="rejected"),
          fact(201, action=None, answer=None)]  # fmt: skip
    report = insights.build(insights.Facts(window, ds, [out(ds[0], "success")]), T0 + timedelta(days=14))
    assert [w.week.isoformat() for w in report.weeks] == ["2026-03-02", "2026-03-09", "2026-03-16"]
    assert report.weeks[0].verdicts == {"go": 1, "escalate": 1, "no-go": 0, "none": 0}
    assert report.weeks[1].verdicts == {"go": 0, "escalate": 0, "no-go": 1, "none": 1}
    assert report.answer_times["automatic"][1] == 2 and sum(report.answer_times["automatic"]) == 2
    assert report.answer_times["human"][4] == 1  # 2 h is in "< 8 h"
    as_json = report.to_json()
    assert as_json["window"]["since"] == "2026-03-02T09:00:00+00:00" and as_json["weeks"][0]["week"] == "2026-03-02"
    assert [g["repository"] for g in as_json["groups"]] == ["o/r"]


def test_the_figures_come_from_the_database(database_url: str) -> None:
    engine = db.make_engine(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    t = now - timedelta(days=2)
    rows = [  # (key, sha, action, answer, human review)
        ("k-auto", "a" * 40, "approve", "approved", False),
        ("k-esc", "b" * 40, "escalate", "approved", True),
        ("k-rej", "c" * 40, "reject", "rejected", False),
        ("k-wait", "d" * 40, "escalate", None, False),
        ("k-other", "e" * 40, "approve", "approved", False),
    ]
    with engine.begin() as conn:
        for i, (key, sha, action, answer, human) in enumerate(rows):
            env = "staging" if key == "k-other" else "production"
            created = t + i * H
            dep_id = conn.execute(insert(Deployment).values(
                key=key, repository="o/r", environment=env, sha=sha, run_id=i, created_at=created,
                state="answered" if answer else "escalated", answer=answer,
                answered_at=created + (2 * H if human else timedelta(seconds=30)) if answer else None,
            ).returning(Deployment.id)).scalar_one()  # fmt: skip
            verdict = {"approve": "go", "escalate": "escalate", "reject": "no-go"}[action]
            decision_id = conn.execute(insert(DecisionRecord).values(
                deployment_id=dep_id, created_at=created + timedelta(seconds=5), verdict=verdict, action=action,
                risk=0.3, data={},
            ).returning(DecisionRecord.id)).scalar_one()  # fmt: skip
            # what deployments.record_decision keeps on the row with the decision
            conn.execute(update(Deployment).where(Deployment.id == dep_id).values(
                decision_id=decision_id, verdict=verdict, decided_action=action, risk=0.3,
                decided_at=created + timedelta(seconds=5), first_commit_at=created - 3 * H,
            ))  # fmt: skip
            conn.execute(insert(HistoryRow).values(deployment_id=key, repository="o/r", environment=env, sha=sha,
                                                   created_at=created,
                                                   features={"first_commit_at": (created - 3 * H).isoformat()}))  # fmt: skip
            if human:
                conn.execute(insert(Review).values(deployment_id=dep_id, actor="mallory", action="approve", allowed=False,
                                                   refusal="not a reviewer", created_at=created + H))  # fmt: skip
                conn.execute(insert(Review).values(deployment_id=dep_id, actor="rita", action="approve", allowed=True,
                                                   created_at=created + 2 * H))  # fmt: skip
                conn.execute(update(Deployment).where(Deployment.id == dep_id).values(human_reviewed=True))
    record_outcome(engine, repository="o/r", environment="production", sha="a" * 40, outcome="success",
                   source="deployment_status", source_key="s1", observed_at=t + timedelta(minutes=5))  # fmt: skip
    record_outcome(engine, repository="o/r", environment="production", sha="b" * 40, outcome="success",
                   source="deployment_status", source_key="s2", observed_at=t + 4 * H)  # fmt: skip
    record_outcome(engine, repository="o/r", environment="production", sha="b" * 40, outcome="incident",
                   source="alert", source_key="s3", observed_at=t + 5 * H)  # fmt: skip
    window = Window(since=now - timedelta(days=7), until=now + H, repository="o/r", environment="production")
    facts = insights.load(engine, window)
    engine.dispose()

    assert [d.key for d in facts.deployments] == ["k-auto", "k-esc", "k-rej", "k-wait"]  # staging filtered out
    by_key = {d.key: d for d in facts.deployments}
    assert by_key["k-esc"].answered_by_human and not by_key["k-auto"].answered_by_human
    assert by_key["k-auto"].first_commit_at == t - 3 * H and by_key["k-auto"].created_at.tzinfo is not None
    assert [o.outcome for o in facts.outcomes] == ["success", "success", "incident"]
    r = insights.build(facts, now)
    assert (r.gate.approved_automatically, r.gate.escalated, r.gate.rejected_automatically) == (1, 2, 1)
    assert r.gate.escaped_failures == 1 and r.gate.waiting_now == 1
    assert r.gate.answer_seconds_human_median == pytest.approx(7200)
    assert r.dora.successful_deployments == 2 and r.dora.change_failure_rate == pytest.approx(0.5)
    assert r.dora.lead_time_seconds_median == pytest.approx((3 * 3600 + 5 * 60 + (3 * 3600 + 3 * 3600)) / 2)


def test_the_insights_indexes_are_migrated_and_match_the_models(database_url: str) -> None:
    from sqlalchemy import inspect

    from github_app.db.models import Base

    engine = db.make_engine(database_url)
    try:
        for table in ("deployments", "outcomes", "audit_log"):
            migrated = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes(table)}
            modelled = {ix.name: [c.name for c in ix.columns] for ix in Base.metadata.tables[table].indexes}
            assert {k: v for k, v in migrated.items() if k in modelled} == modelled
        db.downgrade(engine, "0004")
        assert "ix_outcomes_release" not in {ix["name"] for ix in inspect(engine).get_indexes("outcomes")}
    finally:
        engine.dispose()


def test_reports_are_shared_for_a_minute_and_then_recomputed(database_url: str) -> None:
    from tests.insights_data import seed

    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    seed(engine, deployments=12, days=5, now=now)
    window = insights.window_from("7d", None, now)
    assert window.until.second == 0 and window.until >= now  # whole minutes: callers share the window
    assert insights.window_from("7d", None, now + timedelta(seconds=1)) == window or now.second == 59
    cache = insights.ReportCache(engine, ttl=60)
    first = cache.get(window)
    seed(engine, deployments=3, days=1, now=now, seed_value=8)
    assert cache.get(window) is first and first.gate.deployments == 12
    assert insights.ReportCache(engine, ttl=0).get(window).gate.deployments == 15
    engine.dispose()


def test_the_lean_read_gives_the_same_facts_as_the_mapped_tables(database_url: str) -> None:
    """``load`` reads times raw: every fact must match what the ORM reads of the same rows (and the seed keeps the
    row's decision headline, human review and first commit equal to the decision, review and history rows)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from github_app.db.models import Outcome
    from tests.insights_data import seed

    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    seed(engine, deployments=120, days=10, now=now)
    window = Window(since=now - timedelta(days=6), until=now + H)
    facts = insights.load(engine, window)
    with Session(engine) as session:
        expected = []
        for d in session.scalars(select(Deployment).where(Deployment.created_at >= window.since)
                                 .order_by(Deployment.created_at, Deployment.id)):  # fmt: skip
            decision = session.get(DecisionRecord, d.decision_id) if d.decision_id else None
            history = session.scalars(select(HistoryRow).where(HistoryRow.deployment_id == d.key)).first()
            human = session.scalars(select(Review).where(Review.deployment_id == d.id, Review.allowed.is_(True),
                                                         Review.action.in_(deployments.HUMAN_ACTIONS))).first()  # fmt: skip
            first = history.features.get("first_commit_at") if history else None
            assert decision is not None and (d.verdict, d.decided_action, d.risk, d.decided_at) == (
                decision.verdict, decision.action, decision.risk, decision.created_at)
            assert d.human_reviewed is (human is not None)
            assert d.first_commit_at == (datetime.fromisoformat(first) if first else None)
            expected.append(DeploymentFact(
                d.id, d.key, d.repository, d.environment, d.sha, d.created_at, d.answer, d.answered_at,
                d.verdict, d.decided_action, d.risk, d.decided_at, d.human_reviewed, d.first_commit_at,
            ))  # fmt: skip
        outcomes = [OutcomeFact(o.repository, o.environment, o.sha, o.outcome, o.observed_at)
                    for o in session.scalars(select(Outcome).where(Outcome.observed_at >= window.since)
                                             .order_by(Outcome.observed_at, Outcome.id))]  # fmt: skip
    engine.dispose()
    assert len(expected) > 50 and any(e.answered_by_human for e in expected)
    assert facts.deployments == expected
    assert facts.outcomes == outcomes and outcomes
    assert all(d.created_at.utcoffset() == timedelta(0) for d in facts.deployments)


def test_one_group_overall_figures_equal_a_computation_from_scratch() -> None:
    window = Window(since=T0, until=T0 + timedelta(days=14), repository="o/r", environment="production")
    ds = [fact(1), fact(2, action="escalate", human=True, answer_after=2 * H), fact(3, action="reject", answer="rejected")]
    outcomes = [out(ds[0], "success"), out(ds[1], "failure")]
    now = T0 + timedelta(days=14)
    report = insights.build(insights.Facts(window, ds, outcomes), now)
    results = insights.attribute(ds, outcomes)
    assert report.gate == insights.gate_quality(ds, results, now, repository="o/r", environment="production")
    assert report.dora == insights.dora(ds, results, outcomes, window, repository="o/r", environment="production")
    # an outcome of another environment counts overall, so the overall figures are computed apart
    elsewhere = OutcomeFact("o/r", "staging", "f" * 40, "failure", T0 + H)
    apart = insights.build(insights.Facts(window, ds, [*outcomes, elsewhere]), now)
    assert apart.dora.unrestored_failures == apart.groups[0][1].unrestored_failures + 1
