"""The deployment's lifecycle through the sandbox: who may answer when, and redeliveries that change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from github_app import db
from github_app.db.models import AuditEntry, DecisionRecord, Deployment
from github_app.sandbox.webhooks import (
    check_run_payload,
    deployment_protection_rule_payload,
    issue_comment_payload,
)
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


def answers(world: World) -> list[Any]:
    return [r for r in world.state.reviews(REPO) if r.state is not None and r.accepted]


def settle(world: World) -> None:
    world.wait(lambda: all(d.state in ("done", "dead", "ignored") for d in world.deliveries()), what="the inbox to drain")


def deployment_row(url: str) -> Any:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Deployment)).first()
    finally:
        engine.dispose()


def audit_entries(url: str, kind: str) -> list[Any]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(AuditEntry).where(AuditEntry.kind == kind).order_by(AuditEntry.seq)).all())
    finally:
        engine.dispose()


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
        settle(world)
        assert [r.state for r in answers(world)] == ["rejected"]  # gonogo's own no-go is what GitHub got
        assert "gonogo" in answers(world)[0].comment.lower() or "no-go" in answers(world)[0].comment.lower()
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
        world.wait(lambda: answers(world), timeout=60, what="an answer")
        settle(world)
        assert [r.state for r in answers(world)] == ["approved"]
        assert "override" in answers(world)[0].comment
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
        settle(world)
        assert [r.state for r in answers(world)] == ["rejected"]
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
        settle(world)
        assert world.check_run(LABEL).conclusion == "action_required"
        reports, comments = len(world.gate(LABEL).reports), len(world.state.comments(REPO, 7))
        for i in range(3):  # GitHub (or an operator) redelivers it under new delivery ids
            assert world.send("deployment_protection_rule", payload, f"again-{i}").status_code == 202
        settle(world)
        assert len(world.gate(LABEL).reports) == reports == 2  # "evaluating ..." and the escalation
        assert len(world.state.comments(REPO, 7)) == comments == 1
        assert len(world.state.check_runs(REPO, name="gonogo")) == 1
        assert answers(world) == []
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == 1
        assert conn.execute(select(Deployment.state)).scalar_one() == "escalated"
    engine.dispose()
