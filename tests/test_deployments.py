"""The deployment's transitions on the database: each one moves only from the states it names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from github_app import db, deployments
from github_app.db.models import AuditEntry, DecisionRecord, Deployment
from github_app.deployments import DeploymentBusy
from github_app.evidence import Target

LEASE = 30.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def target(n: int = 1) -> Target:
    return Target(
        repository="acme/api", environment="production", sha="a" * 40, ref="refs/heads/main", run_id=100 + n,
        installation_id=1, created_at=datetime.now(UTC), deployment_key=f"acme/api#{100 + n}/production/{n}",
        default_branch="trunk", creator="dora",
    )  # fmt: skip


def begin(engine: Engine, owner: str, t: Target | None = None, **kw: object) -> deployments.Begun:
    return deployments.begin(engine, t or target(), github_deployment_id=None, pull_requests=[7], callback_url="",
                             owner=owner, lease_seconds=LEASE, **kw)  # type: ignore[arg-type]  # fmt: skip


def decide(engine: Engine, key: str, owner: str, answer: str | None) -> bool:
    with Session(engine) as session, session.begin():
        row = session.scalar(select(Deployment).where(Deployment.key == key))
        assert row is not None
        rec = DecisionRecord(deployment_id=row.id, created_at=datetime.now(UTC), verdict="x", action="x", data={})
        session.add(rec)
        session.flush()
        ok = deployments.record_decision(session, key, owner, rec, answer, "because")  # type: ignore[arg-type]
        if not ok:
            session.rollback()
        return ok


def state(engine: Engine, key: str) -> str:
    row = deployments.load(engine, key)
    assert row is not None
    return row.state


def test_a_new_deployment_is_evaluated_under_a_lease_others_wait_for(engine):
    first = begin(engine, "w1")
    assert first.next == "evaluate" and first.row.default_branch == "trunk"
    with pytest.raises(DeploymentBusy) as busy:
        begin(engine, "w2")
    assert 20 < busy.value.retry_after <= LEASE  # wait about as long as the lease still runs


def test_a_reviewer_cannot_answer_while_gonogo_evaluates_or_after_it_answered(engine):
    key = begin(engine, "w1").row.key
    refused = deployments.accept_human_answer(engine, key, "approved", "lgtm", "rita", "h1", LEASE)
    assert not refused.stored and refused.row.state == "evaluating" and refused.row.answer is None
    assert decide(engine, key, "w1", "rejected")
    late = deployments.accept_human_answer(engine, key, "approved", "lgtm", "rita", "h1", LEASE)
    assert not late.stored and late.row.answer == "rejected"
    # nor may a break-glass override replace gonogo's stored no-go
    assert not deployments.accept_human_answer(engine, key, "approved", "!", "boss", "h2", LEASE, override=True).stored
    assert deployments.mark_answered(engine, key, "w1", "rejected", 200, "gonogo") is not None
    assert state(engine, key) == "answered"


def test_only_the_lease_owner_records_a_decision_or_marks_it_answered(engine):
    key = begin(engine, "w1").row.key
    assert not decide(engine, key, "intruder", "approved")
    assert decide(engine, key, "w1", "approved")
    assert deployments.mark_answered(engine, key, "intruder", "approved", 200, "gonogo") is None
    assert deployments.mark_answered(engine, key, "w1", "rejected", 200, "gonogo") is None  # not the stored answer
    assert deployments.mark_answered(engine, key, "w1", "approved", 200, "gonogo") is not None


def test_an_override_during_evaluation_is_sent_by_the_evaluating_worker_instead_of_its_decision(engine):
    key = begin(engine, "w1").row.key
    accepted = deployments.accept_human_answer(engine, key, "approved", "outage", "boss", "h1", LEASE, override=True)
    assert accepted.stored and not accepted.send and accepted.row.lease_owner == "w1"
    assert not decide(engine, key, "w1", "rejected")  # gonogo's no-go comes too late
    deployments.release(engine, key, "w1")
    assert begin(engine, "w2").next == "send_answer"


def test_an_escalation_takes_one_reviewer_answer_and_a_redelivery_does_nothing(engine):
    key = begin(engine, "w1").row.key
    assert decide(engine, key, "w1", None)
    deployments.escalate(engine, key, "w1")
    assert begin(engine, "w9").next == "nothing"  # a redelivered protection rule
    results: list[bool] = []

    def answer(actor: str, verdict: str) -> None:
        results.append(deployments.accept_human_answer(engine, key, verdict, "x", actor, actor, LEASE).stored)  # type: ignore[arg-type]

    threads = [threading.Thread(target=answer, args=(f"r{i}", "approved" if i % 2 else "rejected")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_a_stuck_deployment_is_found_a_lease_after_its_lease_ended(engine):
    key = begin(engine, "w1").row.key
    now = datetime.now(UTC)
    assert deployments.stuck(engine, now, timedelta(seconds=LEASE)) == []
    later = now + timedelta(seconds=2 * LEASE + 1)
    assert [r.key for r in deployments.stuck(engine, later, timedelta(seconds=LEASE))] == [key]


def test_reminders_abandonment_and_audit(engine):
    key = begin(engine, "w1").row.key
    assert decide(engine, key, "w1", None)
    deployments.note_status_report(engine, key, "w1", 1, 200, "gonogo: ESCALATE")
    deployments.escalate(engine, key, "w1")
    now = datetime.now(UTC)
    assert deployments.mark_reminded(engine, key, now) is not None
    assert deployments.mark_reminded(engine, key, now) is None
    assert deployments.abandon(engine, key, "run cancelled")
    assert not deployments.abandon(engine, key, "run cancelled")
    assert deployments.expire(engine, key, "too late", "s1", LEASE) is None  # final: nothing moves it
    with engine.connect() as conn:
        kinds = [(e.kind, e.data.get("github_status"), e.data.get("state")) for e in conn.execute(select(AuditEntry))]
    assert kinds == [("status_report", 200, None), ("lifecycle", None, "abandoned")]
