"""A re-run of a workflow supersedes the earlier attempt: GitHub takes one answer per run and environment,
and applies it to the attempt that waits now, whatever gonogo meant it for.

Through the real app and the sandbox: an earlier attempt's escalation must not answer the re-run (its
old buttons, or the sweeper sending its stored answer), its completion must not end the re-run's
escalation, and a late request of the earlier attempt must not answer the re-run either.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from github_app.db.models import Deployment
from github_app.sandbox.webhooks import (
    check_run_payload,
    deployment_protection_rule_payload,
    issue_comment_payload,
    workflow_run_payload,
)
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
"""
RERUN = "rerun"


def escalated_world(database_url: str):
    state = release_state(checks_running=True, policy=POLICY, team_members=("rita",))
    return running_world(database_url, state)


def rows(world: World) -> list[Any]:
    return world.query(select(Deployment).order_by(Deployment.id))


def cancel_run(world: World) -> dict[str, Any]:
    """Cancel the waiting workflow run (its attempt ends now) and return its workflow_run.completed payload."""
    _repo, dep = world.state.deployment(LABEL)
    world.state.end_run(REPO, dep.run_id, "cancelled")
    return workflow_run_payload(world.state, REPO, dep.run_id)


def rerun(world: World) -> None:
    """Re-run the cancelled run a little later: its second attempt waits on a new deployment, which gonogo escalates."""
    _repo, dep = world.state.deployment(LABEL)
    world.state.advance(30)  # a person clicks "Re-run", a runner starts the job: the new deployment is later
    world.state.rerun(REPO, dep.run_id)
    again = world.state.add_deployment(REPO, dep.sha, "production", creator="dora", run_id=dep.run_id, ref="main")
    world.state.named_deployments[RERUN] = (REPO, again.id)
    world.request_gate(RERUN)
    world.wait(lambda: any(r.state == "escalated" and r.github_deployment_id == again.id for r in rows(world)),
               what="the re-run's escalation")  # fmt: skip


def click(world: World, check_run_id: int, login: str, identifier: str) -> None:
    payload = check_run_payload(world.state, REPO, check_run_id, "requested_action", identifier=identifier,
                                sender=login)  # fmt: skip
    assert world.send("check_run", payload).status_code == 202
    world.settle()


def answers(world: World) -> list[tuple[str, int]]:
    return [(r.state, r.run_attempt) for r in world.accepted_answers(REPO)]


def test_a_late_completion_of_the_first_attempt_leaves_the_reruns_escalation_waiting(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        ended = cancel_run(world)
        assert world.send("workflow_run", ended, "run-ended").status_code == 202
        world.settle()
        assert [r.state for r in rows(world)] == ["abandoned"]
        closed = world.check_run(LABEL)  # its buttons go with it
        assert (closed.conclusion, closed.actions) == ("neutral", [])
        # nothing waits now: a command is told so, and answers nothing
        payload = issue_comment_payload(world.state, REPO, 7, "/gonogo approve looks fine", "rita")
        assert world.send("issue_comment", payload).status_code == 202
        world.settle()
        assert "is waiting for a decision" in world.state.comments(REPO, 7)[-1].body
        assert [(r.state, r.human_reviewed) for r in rows(world)] == [("abandoned", False)]
        rerun(world)
        # the same completion again (GitHub's redelivery, or gonogo's own catch-up after an outage)
        assert world.send("workflow_run", ended, "run-ended-again").status_code == 202
        world.settle()
        assert [r.state for r in rows(world)] == ["abandoned", "escalated"]
        click(world, world.check_run(RERUN).id, "rita", "approve")
        assert answers(world) == [("approved", 2)]
        assert [(r.state, r.answer) for r in rows(world)] == [("abandoned", None), ("answered", "approved")]


def test_the_first_attempts_buttons_do_not_answer_the_rerun(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        first_check_run = world.check_run(LABEL).id
        cancel_run(world)  # gonogo never hears of it (down, or the delivery failed)
        rerun(world)
        assert world.check_run(RERUN).id != first_check_run
        # the first attempt's check run still shows its buttons; a reviewer presses one
        click(world, first_check_run, "rita", "approve")
        assert answers(world) == []  # the re-run still waits for its own decision
        assert [(r.state, r.answer) for r in rows(world)] == [("abandoned", None), ("escalated", None)]
        # the reviewer is told, and the stale check run loses its buttons; the re-run's keeps them
        assert "@rita" in world.state.comments(REPO, 7)[-1].body
        assert "no longer waits" in world.state.comments(REPO, 7)[-1].body
        stale = next(r for r in world.state.repo(REPO).check_runs if r.id == first_check_run)
        assert (stale.status, stale.conclusion, stale.actions) == ("completed", "neutral", [])
        assert [a["identifier"] for a in world.check_run(RERUN).actions] == ["approve", "reject"]
        click(world, world.check_run(RERUN).id, "rita", "reject")
        assert answers(world) == [("rejected", 2)]
        assert [(r.state, r.answer) for r in rows(world)] == [("abandoned", None), ("answered", "rejected")]


def test_a_late_request_of_the_first_attempt_does_not_answer_the_rerun(database_url):
    with escalated_world(database_url) as world:
        first_request = deployment_protection_rule_payload(world.state, LABEL)
        cancel_run(world)  # the first attempt ended before gonogo heard of it (down, or the delivery failed)
        rerun(world)
        # now the first attempt's request arrives (gonogo's catch-up after the outage)
        _repo, dep = world.state.deployment(LABEL)
        for run in world.state.check_runs(REPO, name="e2e", head_sha=dep.sha):  # finished meanwhile: now a go
            run.status, run.conclusion = "completed", "success"
        assert world.send("deployment_protection_rule", first_request, "late-first").status_code == 202
        world.settle()
        assert answers(world) == []  # the re-run still waits for a reviewer
        assert sorted(r.state for r in rows(world)) == ["abandoned", "escalated"]
