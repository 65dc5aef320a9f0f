"""Only the right human decides, exactly once: an answer is bound to the policy that names its reviewers and to
the run attempt that waits for it.

Through the real app and the sandbox over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from github_app.db.models import DecisionRecord, Deployment, Review, Waiver
from github_app.sandbox.webhooks import (
    check_run_payload,
    deployment_protection_rule_payload,
    issue_comment_payload,
)
from tests.scenarios import LABEL, REPO, TEAM, comment, release_state, replies, reviews
from tests.world import World, running_world


def rows(world: World) -> list[Any]:
    return world.query(select(Deployment).order_by(Deployment.id))


def escalate_again(world: World) -> None:
    """Re-run the gonogo check run of the escalation, and wait until gonogo has decided and escalated again."""
    rerun = check_run_payload(world.state, REPO, world.check_run(LABEL).id, "rerequested")
    assert world.send("check_run", rerun).status_code == 202
    world.wait(lambda: len(world.query(select(DecisionRecord))) == 2, what="the second decision")
    world.wait(lambda: [r.state for r in rows(world)] == ["escalated"], what="the second escalation")


def test_a_policy_broken_after_the_escalation_does_not_make_every_writer_a_reviewer(database_url):
    """Only the SRE team may decide; a policy that stops parsing must not hand the decision to anyone with write."""
    state = release_state(checks_running=True, policy=TEAM, team_members=("rita",))
    state.set_collaborator(REPO, "sam", "write")  # a developer: write access, not on the SRE team
    state.set_collaborator(REPO, "ada", "admin")
    with running_world(database_url, state) as world:
        world.escalate(LABEL)
        # a key a newer gonogo knows, or a typo: the file on the default branch no longer parses
        world.state.set_file(REPO, "main", ".github/gonogo.yml", TEAM + "      approvers: [sam]\n")
        comment(world, "sam", "/gonogo approve ship it")
        assert world.accepted_answers(REPO) == []
        [refused] = reviews(world)
        assert (refused.actor, refused.allowed) == ("sam", False)
        assert "policy" in (refused.refusal or "") and "admin" in (refused.refusal or "")
        assert any(b.startswith("@sam") and "cannot approve" in b and "invalid" in b for b in replies(world))
        # an admin of the repository (who could fix or bypass the policy anyway) still may
        comment(world, "ada", "/gonogo approve checked by hand while the policy is fixed")
        world.wait(lambda: world.accepted_answers(REPO), what="ada's approval")
        assert [(r.state, r.comment) for r in world.accepted_answers(REPO)] == [
            ("approved", "Approved by @ada: checked by hand while the policy is fixed")]  # fmt: skip


RERUN = "rerun"


def team_world(database_url: str):
    state = release_state(checks_running=True, policy=TEAM, team_members=("rita",))
    return running_world(database_url, state)


def rerun_unheard(world: World) -> None:
    """Cancel the waiting run and re-run it: the second attempt waits on a new deployment gonogo has not heard of
    yet (its webhook still queued, or gonogo catching up after an outage), nor of the cancellation."""
    _repo, dep = world.state.deployment(LABEL)
    world.state.end_run(REPO, dep.run_id, "cancelled")
    world.state.advance(30)
    world.state.rerun(REPO, dep.run_id)
    again = world.state.add_deployment(REPO, dep.sha, "production", creator="dora", run_id=dep.run_id, ref="main")
    world.state.named_deployments[RERUN] = (REPO, again.id)


def test_the_first_attempts_buttons_do_not_answer_a_rerun_gonogo_has_not_heard_of(database_url):
    """GitHub applies an answer to the attempt that waits now: one meant for the first attempt must not land on the
    re-run before gonogo has evaluated it."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        first_check_run = world.check_run(LABEL).id
        rerun_unheard(world)
        world.click(LABEL, "rita")
        world.settle()
        assert world.accepted_answers(REPO) == []  # the re-run waits for gonogo's own decision
        [row] = rows(world)
        assert (row.state, row.answer, row.human_reviewed) == ("abandoned", None, False)
        [attempt] = reviews(world)
        assert attempt.allowed is False and "no longer waits" in (attempt.refusal or "")
        assert "@rita" in replies(world)[-1] and "no longer waits" in replies(world)[-1]
        stale = next(r for r in world.state.repo(REPO).check_runs if r.id == first_check_run)
        assert (stale.conclusion, stale.actions) == ("neutral", [])
        # the re-run's request arrives: gonogo escalates it, and rita's answer there counts
        world.request_gate(RERUN)
        world.wait(lambda: [r.state for r in rows(world)] == ["abandoned", "escalated"], what="the re-run's escalation")
        world.click(RERUN, "rita", "reject")
        world.settle()
        assert [(r.state, r.run_attempt) for r in world.accepted_answers(REPO)] == [("rejected", 2)]


def test_a_command_after_the_run_was_cancelled_decides_nothing(database_url):
    """The run ended before gonogo heard (its workflow_run event not yet handled): a command is no decision."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        _repo, dep = world.state.deployment(LABEL)
        world.state.end_run(REPO, dep.run_id, "cancelled")
        comment(world, "rita", "/gonogo approve looks fine")
        assert world.accepted_answers(REPO) == []
        [row] = rows(world)
        assert (row.state, row.answer, row.human_reviewed) == ("abandoned", None, False)
        assert "no longer waits" in replies(world)[-1]


def test_a_reviewer_whose_answer_was_stored_before_github_failed_is_not_told_it_was_dropped(database_url):
    """GitHub fails while the approval is sent: the click's retry sends the stored answer, and counts it once."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        world.state.inject("POST", "/repos/acme/api/actions/runs/*/deployment_protection_rule", "status",
                           status=502, times=5)  # fmt: skip
        world.click(LABEL, "rita")
        world.settle()
        assert [(r.state, r.comment) for r in world.accepted_answers(REPO)] == [
            ("approved", "Approved by @rita: via the check run button")]  # fmt: skip
        assert [(r.actor, r.allowed, r.refusal) for r in reviews(world)] == [("rita", True, None)]
        assert not any("not applied" in b for b in replies(world))
        [row] = rows(world)
        assert (row.state, row.answer, row.human_reviewed) == ("answered", "approved", True)
        assert (world.check_run(LABEL).conclusion, world.check_run(LABEL).actions) == ("success", [])


def test_a_comment_written_before_gonogo_decided_again_does_not_answer_the_new_escalation(database_url):
    """A re-run of the check run decides afresh (the reasons may differ): a command written before it, delivered
    once the new escalation is up, answered the earlier escalation and answers nothing now."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        written = issue_comment_payload(world.state, REPO, 7, "/gonogo approve saw the e2e run", "rita")
        time.sleep(1.1)  # GitHub's times have whole seconds: the new decision comes a second later at least
        escalate_again(world)
        assert world.send("issue_comment", written).status_code == 202  # delivered late
        world.settle()
        assert world.accepted_answers(REPO) == []
        assert "was waiting for a decision when this comment was written" in replies(world)[-1]
        # a command written now answers it
        comment(world, "rita", "/gonogo approve read the new report")
        world.wait(lambda: world.accepted_answers(REPO), what="rita's approval")


def test_a_waiver_comment_retried_after_a_failure_is_recorded_once(database_url):
    """GitHub fails while the waiver's re-evaluation answers: the comment's retry must not give the waiver twice
    (revoking one copy would leave the other waiving)."""
    rule = "GNG-QUAL-003"  # "Ensure no checks are still running": what escalates this release
    with team_world(database_url) as world:
        world.escalate(LABEL)
        world.state.inject("POST", "/repos/acme/api/actions/runs/*/deployment_protection_rule", "status",
                           status=502, times=5)  # fmt: skip
        until = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
        comment(world, "rita", f"/gonogo waive {rule} until {until} e2e is advisory")
        assert [(w.author, w.rule_id) for w in world.query(select(Waiver))] == [("rita", rule)]
        assert [(r.actor, r.action, r.allowed) for r in reviews(world)] == [("rita", "waive", True)]
        assert len([b for b in replies(world) if b.startswith("Waiver recorded")]) == 1
        assert world.gate(LABEL).answer == "approved"


def test_a_command_on_a_pull_request_that_moved_on_must_name_the_commit_it_approves(database_url):
    """The pull request shows its new head; the deployment waiting is of the commit pushed before: an approval
    written on the page must say it means that commit, or it answers nothing."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        deployed = world.state.deployment(LABEL)[1].sha
        newer = world.state.add_commit(REPO, message="Tidy up", author="bob", branch="main", parents=[deployed])
        world.state.repo(REPO).pulls[7].head_sha = newer.sha  # a push to the PR (or a force-push)
        comment(world, "rita", "/gonogo approve the diff looks fine")
        assert world.accepted_answers(REPO) == []
        assert f"`{deployed[:7]}`" in replies(world)[-1] and f"production@{deployed[:7]}" in replies(world)[-1]
        assert world.query(select(Review)) == []  # refused before it reached a deployment: audited only
        comment(world, "rita", f"/gonogo approve production@{deployed[:7]} checked that commit")
        world.wait(lambda: world.accepted_answers(REPO), what="rita's approval")
        assert world.accepted_answers(REPO)[0].comment == "Approved by @rita: checked that commit"


def test_a_click_on_the_report_gonogo_replaced_does_not_answer_the_new_one(database_url):
    """The button pressed on the first report, delivered after gonogo decided again, answered that report only."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        clicked = check_run_payload(world.state, REPO, world.check_run(LABEL).id, "requested_action",
                                    identifier="approve", sender="rita")  # fmt: skip
        time.sleep(1.1)  # GitHub's times have whole seconds: the new decision comes a second later at least
        escalate_again(world)
        assert world.send("check_run", clicked).status_code == 202  # delivered late
        world.settle()
        assert world.accepted_answers(REPO) == []
        assert "@rita" in replies(world)[-1] and "decided again" in replies(world)[-1]
        [attempt] = reviews(world)
        assert attempt.allowed is False and "decided again" in (attempt.refusal or "")
        world.click(LABEL, "rita")  # on the report shown now
        world.settle()
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]


def test_a_deployment_of_the_pull_requests_test_merge_takes_commands_without_naming_it(database_url):
    """A pull_request run deploys GitHub's test merge (refs/pull/N/merge), never the head itself: that is the
    commit the page shows, and a command answers it as written."""
    state = release_state(checks_running=True, policy=TEAM, team_members=("rita",), pull_request=None)
    _repo, dep = state.deployment(LABEL)
    head = state.add_commit(REPO, message="Paginate, take two", author="bob", branch="orders", parents=[dep.sha])
    merge = state.add_commit(REPO, message="Merge head into main", author="bob", parents=[dep.sha, head.sha])
    state.add_pull_request(REPO, 7, head_sha=head.sha, head_ref="orders", title="Paginate", user="bob")
    state.add_check_run(REPO, merge.sha, "e2e", status="in_progress", conclusion=None)
    tested = state.add_deployment(REPO, merge.sha, "production", creator="dora", ref="refs/pull/7/merge")
    state.named_deployments["merge"] = (REPO, tested.id)
    with running_world(database_url, state) as world:
        payload = deployment_protection_rule_payload(world.state, "merge", event="pull_request")
        payload["pull_requests"] = [{"number": 7, "head": {"sha": head.sha}}]  # the run's pull request
        assert world.send("deployment_protection_rule", payload).status_code == 202
        world.wait(lambda: [r.state for r in rows(world)] == ["escalated"], what="the escalation")
        comment(world, "rita", "/gonogo approve tested merge looks fine")
        world.wait(lambda: world.accepted_answers(REPO), what="rita's approval")


def test_an_edited_comment_or_a_bots_comment_answers_nothing(database_url):
    """Only a comment as first written by a person acts: editing one into a command (a later edit cannot be
    bound to when it was written) or a bot's command (its app is no reviewer) decides nothing."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        edited = issue_comment_payload(world.state, REPO, 7, "/gonogo approve fine", "rita", action="edited")
        assert world.send("issue_comment", edited).status_code == 202
        bot = issue_comment_payload(world.state, REPO, 7, "/gonogo approve fine", "deploy-helper[bot]")
        bot["sender"]["type"] = bot["comment"]["user"]["type"] = "Bot"
        assert world.send("issue_comment", bot).status_code == 202
        world.settle()
        assert world.accepted_answers(REPO) == []
        assert reviews(world) == [] and [r.state for r in rows(world)] == ["escalated"]


PUBLIC_READ = """
environments:
  production:
    reviewers:
      users: [rita, lena]
      four_eyes: true
      min_permission: read
"""


def test_read_access_to_a_public_repository_is_no_access_of_ones_own(database_url):
    """GitHub says read for any account on a public repository: a listed login (which a renamed account frees for
    anyone to take) must have been given access, even when the policy asks only for read."""
    state = release_state(checks_running=True, policy=PUBLIC_READ, reviewers_team="")
    state.repo(REPO).private = False
    state.user("lena")  # listed, but never given access: anyone who registered the freed login
    with running_world(database_url, state) as world:
        world.escalate(LABEL)
        comment(world, "lena", "/gonogo approve looks fine")
        assert world.accepted_answers(REPO) == []
        [refused] = reviews(world)
        assert refused.allowed is False and "read access" in (refused.refusal or "")
        world.state.set_collaborator(REPO, "lena", "read")  # given read access: the policy's level
        comment(world, "lena", "/gonogo approve looks fine now")
        world.wait(lambda: world.accepted_answers(REPO), what="lena's approval")


def test_an_expiry_does_not_reject_a_rerun_gonogo_has_not_heard_of(database_url):
    """The policy's expiry of the first attempt must not land its rejection on the re-run that waits now."""
    from github_app.features.escalation import sweep

    with team_world(database_url) as world:
        world.escalate(LABEL)
        rerun_unheard(world)
        app_ctx = world.app_context()

        async def expire() -> dict[str, int]:
            try:
                return await sweep(app_ctx, now=datetime.now(UTC) + timedelta(days=4))  # the default pack: 3 days
            finally:
                await app_ctx.services["github"].aclose()

        assert asyncio.run(expire()) == {"reminded": 0, "expired": 0}
        app_ctx.engine.dispose()
        assert world.accepted_answers(REPO) == []
        assert [(r.state, r.answer) for r in rows(world)] == [("abandoned", None)]


def test_a_re_evaluation_of_the_first_attempt_does_not_answer_a_rerun_gonogo_has_not_heard_of(database_url):
    """A re-run of the first attempt's gonogo check run (or a waiver given on it) decides again: that answer
    must not land on the re-run that waits now."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        first_check_run = world.check_run(LABEL).id
        rerun_unheard(world)
        _repo, dep = world.state.deployment(LABEL)
        for run in world.state.check_runs(REPO, name="e2e", head_sha=dep.sha):  # finished meanwhile: now a go
            run.status, run.conclusion = "completed", "success"
        again = check_run_payload(world.state, REPO, first_check_run, "rerequested")
        assert world.send("check_run", again).status_code == 202
        world.settle()
        assert world.accepted_answers(REPO) == []
        assert [(r.state, r.answer) for r in rows(world)] == [("abandoned", None)]
        stale = next(r for r in world.state.repo(REPO).check_runs if r.id == first_check_run)
        assert (stale.conclusion, stale.actions) == ("neutral", [])
