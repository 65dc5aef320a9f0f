"""The deployment's lifecycle through the sandbox: who may answer when, and redeliveries that change nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from github_app import db
from github_app.db.models import DecisionRecord, Deployment
from github_app.sandbox.webhooks import (
    check_run_payload,
    deployment_protection_rule_payload,
    issue_comment_payload,
)
from tests.helpers import audit_entries, deployment_row
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
      break_glass: [boss]
"""
# evidence that takes a while to read keeps the deployment in `evaluating` long enough to answer into it
SLOW_EVIDENCE = "/repos/acme/api/commits/*/check-runs"


def no_go_world(database_url: str):
    state = release_state(failing_tests=3, critical_vuln=True, policy=POLICY, team_members=("rita", "boss"))
    state.set_collaborator(REPO, "boss", "admin")
    state.inject("GET", SLOW_EVIDENCE, "latency", seconds=2.5, times=None)
    return running_world(database_url, state)


def wait_evaluating(world: World) -> None:
    world.wait(lambda: (row := deployment_row(world.database_url)) is not None and row.state == "evaluating"
               and world.state.check_runs(REPO, name="gonogo"), what="the evaluation to start")  # fmt: skip


def test_an_authorised_approval_during_evaluation_does_not_beat_the_no_go(database_url):
    with no_go_world(database_url) as world:
        world.request_gate(LABEL)
        wait_evaluating(world)
        comment = issue_comment_payload(world.state, REPO, 7, "/gonogo approve ship it, I know what I am doing", "rita")
        assert world.send("issue_comment", comment).status_code == 202
        # the approve button, forged onto the check run while it is still in progress
        run = world.state.check_runs(REPO, name="gonogo")[0]
        click = check_run_payload(world.state, REPO, run.id, "requested_action", identifier="approve", sender="rita")
        assert world.send("check_run", click).status_code == 202
        world.wait_decided(LABEL, timeout=60)
        world.settle()
        answers = world.accepted_answers(REPO)
        assert [r.state for r in answers] == ["rejected"]  # gonogo's own no-go is what GitHub got
        assert "gonogo" in answers[0].comment.lower() or "no-go" in answers[0].comment.lower()
        refused = [r for r in world.state.reviews(REPO) if not r.accepted]
        assert refused == []  # nothing was refused by GitHub: no second answer was even tried
        replies = [c.body for c in world.state.comments(REPO, 7) if "still evaluating" in c.body]
        assert replies and "@rita" in replies[0]
    sent = [e for e in audit_entries(database_url, "answer") if e.data.get("stage") == "sent"]
    assert [(e.data["state"], e.data["github_status"], e.actor) for e in sent] == [("rejected", 200, "gonogo")]


def test_a_break_glass_override_during_evaluation_wins_and_is_audited_as_an_override(database_url):
    with no_go_world(database_url) as world:
        world.request_gate(LABEL)
        wait_evaluating(world)
        comment = issue_comment_payload(world.state, REPO, 7, "/gonogo override customer outage fix", "boss")
        assert world.send("issue_comment", comment).status_code == 202
        world.wait(lambda: world.accepted_answers(REPO), timeout=60, what="an answer")
        world.settle()
        answers = world.accepted_answers(REPO)
        assert [r.state for r in answers] == ["approved"]
        assert "override" in answers[0].comment
        assert [r for r in world.state.reviews(REPO) if not r.accepted] == []
    overrides = audit_entries(database_url, "override")
    assert [(e.actor, e.data["allowed"]) for e in overrides] == [("boss", True)]
    stored = [e for e in audit_entries(database_url, "answer") if e.data.get("by") == "override"]
    assert [(e.actor, e.data["state"]) for e in stored] == [("boss", "approved")]
    sent = [e for e in audit_entries(database_url, "answer") if e.data.get("stage") == "sent"]
    assert [(e.data["state"], e.data["github_status"]) for e in sent] == [("approved", 200)]


def test_an_override_by_someone_without_break_glass_rights_changes_nothing(database_url):
    with no_go_world(database_url) as world:
        world.request_gate(LABEL)
        wait_evaluating(world)
        comment = issue_comment_payload(world.state, REPO, 7, "/gonogo override trust me", "rita")
        assert world.send("issue_comment", comment).status_code == 202
        world.wait_decided(LABEL, timeout=60)
        world.settle()
        assert [r.state for r in world.accepted_answers(REPO)] == ["rejected"]
    # the refused attempt is on record as an override attempt; nothing was answered
    assert [(e.actor, e.data["allowed"]) for e in audit_entries(database_url, "override")] == [("rita", False)]
    assert [e for e in audit_entries(database_url, "answer") if e.data.get("by") == "override"] == []


ESCALATING = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
"""


def test_a_redelivered_protection_rule_for_an_escalated_deployment_reposts_nothing(database_url):
    state = release_state(checks_running=True, policy=ESCALATING, team_members=("rita",))
    with running_world(database_url, state) as world:
        payload = deployment_protection_rule_payload(world.state, LABEL)
        assert world.send("deployment_protection_rule", payload, "first").status_code == 202
        world.wait_decided(LABEL)
        world.settle()
        assert world.check_run(LABEL).conclusion == "action_required"
        reports, comments = len(world.gate(LABEL).reports), len(world.state.comments(REPO, 7))
        for i in range(3):  # GitHub (or an operator) redelivers it under new delivery ids
            assert world.send("deployment_protection_rule", payload, f"again-{i}").status_code == 202
        world.settle()
        assert len(world.gate(LABEL).reports) == reports == 2  # "evaluating ..." and the escalation
        assert len(world.state.comments(REPO, 7)) == comments == 1
        assert len(world.state.check_runs(REPO, name="gonogo")) == 1
        assert world.accepted_answers(REPO) == []
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == 1
        assert conn.execute(select(Deployment.state)).scalar_one() == "escalated"
    engine.dispose()


def test_a_delivery_waiting_on_another_workers_lease_is_parked_not_failed(database_url):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from github_app.db.models import Delivery

    with running_world(database_url, release_state(), max_attempts=2, lease_seconds=3.0) as world:
        world.request_gate(LABEL, delivery_id="first")
        world.wait_decided(LABEL)
        engine = db.make_engine(database_url)
        with engine.begin() as conn:  # another worker died holding the deployment, half-way through
            conn.execute(update(Deployment).values(
                state="evaluating", answered_at=None, answer=None, lease_owner="elsewhere",
                lease_until=datetime.now(UTC) + timedelta(seconds=3),
            ))  # fmt: skip
        gate = world.gate(LABEL)  # and GitHub never got its answer
        gate.answer, gate.history[:] = None, []
        world.request_gate(LABEL, delivery_id="redelivered")
        world.wait(lambda: world.accepted_answers(REPO), timeout=30, what="the answer after the lease ran out")
        world.settle()
        with engine.connect() as conn:
            row = conn.execute(select(Delivery).where(Delivery.delivery_id == "redelivered")).one()
        engine.dispose()
        assert row.state == "done" and row.attempts <= 2  # waiting was never a failed attempt
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]


def test_a_decided_but_unanswered_deployment_is_answered_without_deciding_again(database_url):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL, delivery_id="first")
        world.wait_decided(LABEL)
        engine = db.make_engine(database_url)
        with engine.begin() as conn:  # as if the worker died between storing the answer and telling GitHub
            conn.execute(update(Deployment).values(
                state="decided", answered_at=None, lease_owner="dead", lease_until=datetime.now(UTC) - timedelta(seconds=1),
            ))  # fmt: skip
        gate = world.gate(LABEL)
        gate.answer, gate.history[:] = None, []
        world.request_gate(LABEL, delivery_id="redelivered")
        world.wait(lambda: world.accepted_answers(REPO), timeout=30, what="the stored answer to be sent")
        world.settle()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == 1
            assert conn.execute(select(Deployment.state)).scalar_one() == "answered"
        engine.dispose()
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]
