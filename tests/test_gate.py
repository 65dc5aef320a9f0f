"""The end-to-end gate: webhook in, evidence read from the sandbox, check run out, deployment answered."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from github_app import db
from github_app.db.models import DecisionRecord, Deployment
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world


@pytest.fixture
def demo(database_url: str):
    with running_world(database_url) as w:
        yield w


def reviews(world: World, label: str = LABEL) -> list:
    repo, dep = world.state.deployment(label)
    return [r for r in world.state.reviews(repo.full_name) if r.run_id == dep.run_id]


def answers(world: World, label: str = LABEL) -> list:
    return [r for r in reviews(world, label) if r.state is not None]


def test_clean_release_is_approved_with_a_report(database_url):
    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        assert gate.answer == "approved", world.check_run(LABEL).output["summary"][:2000]
        [final] = answers(world)
        assert final.state == "approved" and len(final.comment) <= 1024 and "GO" in final.comment
        run = world.check_run(LABEL)
        assert run.status == "completed" and run.conclusion == "success"
        summary = run.output["summary"]
        for check in ("build", "lint", "ci/jenkins"):
            assert check in summary
        assert "readiness" in summary.lower() and "| Dimension |" in summary
        assert reviews(world)[0].state is None and "evaluating" in reviews(world)[0].comment


def test_failing_check_is_rejected_naming_it_with_its_link(database_url):
    with running_world(database_url, release_state(failed_check=True)) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        assert gate.answer == "rejected"
        run = world.check_run(LABEL)
        assert run.conclusion == "failure"
        assert "integration" in run.output["summary"]
        assert "[integration](http" in run.output["summary"]  # linked to the failing check
        assert "❌ failure" in run.output["summary"]


def test_failing_tests_are_rejected_with_annotations(demo: World):
    demo.request_gate("failing-tests")
    gate = demo.wait_decided("failing-tests")
    assert gate.answer == "rejected"
    run = demo.check_run("failing-tests")
    assert run.conclusion == "failure"
    paths = {a.path for a in run.annotations}
    assert "tests/test_cart.py" in paths and all(a.annotation_level == "failure" for a in run.annotations
                                                 if a.path.startswith("tests/"))


def test_running_checks_escalate_and_leave_the_deployment_pending(database_url):
    with running_world(database_url, release_state(checks_running=True)) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        assert gate.answer is None and gate.waiting
        assert answers(world) == []
        run = world.check_run(LABEL)
        assert run.conclusion == "action_required"
        assert [a["identifier"] for a in run.actions] == ["approve", "reject"]
        assert all(len(a["label"]) <= 20 for a in run.actions)
        assert any("ESCALATE" in r.comment for r in reviews(world))


def test_same_delivery_id_twice_and_redelivery_with_new_id_answer_once(database_url):
    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL, delivery_id="d-1")
        duplicate = world.send("deployment_protection_rule", _payload(world), "d-1")
        assert duplicate.status_code == 200
        world.wait_decided(LABEL)
        world.request_gate(LABEL, delivery_id="d-2")  # GitHub re-sends the same request under a new id
        world.wait(lambda: all(d.state == "done" for d in world.deliveries()) and len(world.deliveries()) == 2)
        assert [r.state for r in answers(world)] == ["approved"]
        assert len(world.state.check_runs(REPO, name="gonogo")) == 1


def test_a_rerun_gets_its_own_single_answer(database_url):
    with running_world(database_url, release_state(failing_tests=2)) as world:
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "rejected"
        first = [(r.state, r.run_attempt) for r in answers(world)]
        _repo, dep = world.state.deployment(LABEL)
        world.state.rerun(REPO, dep.run_id)
        new_dep = world.state.add_deployment(REPO, dep.sha, "production", creator="dora", run_id=dep.run_id)
        new_dep.name = "rerun"
        world.state.named_deployments["rerun"] = (REPO, new_dep.id)
        world.request_gate("rerun")
        world.wait(lambda: world.gate("rerun").answer is not None, what="the re-run's answer")
        second = [(r.state, r.run_attempt) for r in answers(world, "rerun")]
        assert first == [("rejected", 1)]
        assert second == [("rejected", 2)]
        assert len(world.state.check_runs(REPO, name="gonogo")) == 2  # one evaluation per attempt


def _payload(world: World) -> dict:
    from github_app.sandbox.webhooks import deployment_protection_rule_payload

    return deployment_protection_rule_payload(world.state, LABEL)


def test_decision_is_stored_with_evidence_and_policy(database_url):
    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        dep = conn.execute(select(Deployment)).one()
        decision = conn.execute(select(DecisionRecord)).one()
    engine.dispose()
    assert dep.answer == "approved" and dep.answered_at is not None and dep.state == "answered"
    assert decision.verdict == "go" and decision.data["evidence"]["sha"] == dep.sha
    assert decision.data["evidence"]["change"]["availability"] == "ok"  # compared with the last good deployment
    assert decision.data["evidence"]["change"]["files_changed"] == 2
