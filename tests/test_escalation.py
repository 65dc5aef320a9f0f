"""Escalation through the sandbox: buttons, PR commands, authorisation at click time, reminders, expiry, waivers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from github_app import audit, db
from github_app.db.models import HistoryRow, Review
from github_app.sandbox.webhooks import check_run_payload, issue_comment_payload
from tests.helpers import deployment_row, execute, query
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
      remind_after: 4h
      expire_after: 3d
"""


def escalated_world(database_url: str, **kwargs):
    state = release_state(checks_running=True, policy=POLICY, team_members=("rita", "dora"), **kwargs)
    return running_world(database_url, state)


def test_buttons_refusals_and_a_single_approval(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        run = world.check_run(LABEL)
        assert run.conclusion == "action_required" and [a["label"] for a in run.actions] == ["Approve", "Reject"]
        pr_comments = world.state.comments(REPO, 7)
        assert pr_comments and "@acme/sre" in pr_comments[0].body

        row = deployment_row(database_url)
        # the decision's headline and the change's first commit are kept on the row for the insights
        assert (row.verdict, row.decided_action, row.human_reviewed) == ("escalate", "escalate", False)
        assert row.risk is not None and row.decided_at is not None and row.decided_at >= row.created_at
        (history,) = query(database_url, select(HistoryRow))
        first = history.features.get("first_commit_at")
        assert first and row.first_commit_at == datetime.fromisoformat(first)

        world.click(LABEL, "eve")  # not a reviewer
        world.settle()
        world.click(LABEL, "dora")  # the deployer: four eyes
        world.settle()
        assert world.gate(LABEL).answer is None
        assert deployment_row(database_url).human_reviewed is False  # refused attempts are no human answer
        world.click(LABEL, "rita", delivery_id="click-1")
        world.click(LABEL, "rita", delivery_id="click-1")  # delivered twice
        world.click(LABEL, "rita", delivery_id="click-2")  # clicked twice
        world.settle()
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]
        assert deployment_row(database_url).human_reviewed is True
        assert "rita" in world.accepted_answers(REPO)[0].comment
        rows = query(database_url, select(Review).order_by(Review.id))
        assert [(r.actor, r.allowed) for r in rows][:3] == [("eve", False), ("dora", False), ("rita", True)]
        assert "four eyes" in rows[1].refusal
        replies = [c.body for c in world.state.comments(REPO, 7)]
        assert any("@eve" in b and "cannot approve" in b for b in replies)
        assert world.check_run(LABEL).conclusion == "success"
    engine = db.make_engine(database_url)
    assert audit.verify(engine).ok
    engine.dispose()


def test_reviewer_removed_from_team_before_clicking_is_refused(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        world.state.remove_team_member("acme", "sre", "rita")
        world.click(LABEL, "rita")
        world.settle()
        assert world.gate(LABEL).answer is None
        assert query(database_url, select(Review).order_by(Review.id))[-1].allowed is False


def test_reject_command_in_a_pr_comment(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        payload = issue_comment_payload(world.state, REPO, 7, "/gonogo reject the e2e suite is still red", "rita")
        assert world.send("issue_comment", payload).status_code == 202
        world.wait(lambda: world.gate(LABEL).answer, what="the rejection")
        assert world.gate(LABEL).answer == "rejected"
        assert "the e2e suite is still red" in world.accepted_answers(REPO)[0].comment


def test_a_command_the_page_does_not_show_as_text_does_not_answer(database_url):
    """Hidden in an HTML comment, or shown as code, a command is not a reviewer's decision; a visible one is."""
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        hidden = ("Looks fine overall.\n<!--\n/gonogo approve nobody sees this line on the page\n-->",
                  "Paste of the docs:\n\n    /gonogo approve shown as code",
                  "~~~\n```\n/gonogo approve inside a fence\n```\n~~~")
        for body in hidden:
            payload = issue_comment_payload(world.state, REPO, 7, body, "rita")
            assert world.send("issue_comment", payload).status_code == 202
        world.settle()
        assert world.gate(LABEL).answer is None
        assert not query(database_url, select(Review))  # not even a refused attempt: there was no command
        payload = issue_comment_payload(world.state, REPO, 7, "/gonogo reject the e2e suite is still red", "rita")
        assert world.send("issue_comment", payload).status_code == 202
        world.wait(lambda: world.gate(LABEL).answer, what="the rejection")
        assert world.gate(LABEL).answer == "rejected"


def test_reminder_then_expiry_with_a_shortened_clock(database_url):
    from github_app.features.escalation import sweep

    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        app_ctx = world.app_context()
        now = datetime.now(UTC)

        async def sweeps() -> list[dict[str, int]]:
            try:  # one event loop, like the app's sweeper task
                return [await sweep(app_ctx, now=now + later) for later in
                        (timedelta(0), timedelta(hours=5), timedelta(hours=6))]  # fmt: skip
            finally:
                await app_ctx.services["github"].aclose()

        assert asyncio.run(sweeps()) == [
            {"reminded": 0, "expired": 0}, {"reminded": 1, "expired": 0}, {"reminded": 0, "expired": 0},
        ]  # fmt: skip
        assert any("Reminder" in c.body for c in world.state.comments(REPO, 7))

        async def expire() -> dict[str, int]:
            try:
                return await sweep(app_ctx, now=now + timedelta(days=4))
            finally:
                await app_ctx.services["github"].aclose()

        assert asyncio.run(expire()) == {"reminded": 0, "expired": 1}
        assert world.gate(LABEL).answer == "rejected"
        assert "Expired" in world.accepted_answers(REPO)[0].comment
        app_ctx.engine.dispose()  # close its pooled connections now, not at garbage collection


def test_waiver_turns_a_no_go_into_a_go_for_that_environment_only(database_url):
    from github_app import waivers

    relaxed = POLICY + "    approve: {max_risk: 0.35}\n"
    state = release_state(failed_check=True, policy=relaxed, team_members=("rita",))
    with running_world(database_url, state) as world:
        engine = db.make_engine(database_url)
        from sqlalchemy.orm import Session

        with Session(engine) as session, session.begin():
            waivers.add_waiver(session, REPO, "production", "GNG-QUAL-001", None,
                               datetime.now(UTC) + timedelta(days=2), "known flaky integration env", "rita")  # fmt: skip
            waivers.add_waiver(session, REPO, "staging", "GNG-QUAL-002", None,
                               datetime.now(UTC) + timedelta(days=2), "other environment", "rita")  # fmt: skip
        engine.dispose()
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
        assert gate.answer == "approved", summary[:1500]
        assert "GNG-QUAL-001" in summary and "waive" in summary.lower()
        engine = db.make_engine(database_url)
        later = datetime.now(UTC) + timedelta(days=3)
        assert waivers.active_waivers(engine, REPO, "production", gate_sha(world), later) == []  # expired by itself
        assert [w.rule_id for w in waivers.active_waivers(engine, REPO, "production", gate_sha(world), datetime.now(UTC))] == ["GNG-QUAL-001"]
        engine.dispose()


def gate_sha(world: World) -> str:
    return world.state.deployment(LABEL)[1].sha


def test_without_the_waiver_the_same_release_is_rejected(database_url):
    relaxed = POLICY + "    approve: {max_risk: 0.35}\n"
    with running_world(database_url, release_state(failed_check=True, policy=relaxed)) as world:
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "rejected"


def test_a_stored_but_unsent_answer_wins_over_a_later_click(database_url):
    """A crash between storing an answer and telling GitHub: the next click sends the stored answer, not its own."""
    from sqlalchemy import update

    from github_app.db.models import Deployment

    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        # what a worker that died between storing a reviewer's answer and telling GitHub leaves behind
        execute(database_url, update(Deployment).values(
            state="answering", answer="rejected", answer_comment="Rejected by @rita: broken",
            lease_owner="dead-worker", lease_until=datetime.now(UTC) - timedelta(seconds=1),
        ))  # fmt: skip
        world.click(LABEL, "rita", "approve")
        world.settle()
        assert [(r.state, r.comment) for r in world.accepted_answers(REPO)] == [("rejected", "Rejected by @rita: broken")]


def test_a_click_whose_payload_names_another_repository_answers_nothing(database_url):
    """Defence in depth: a check run id is unique across GitHub and only its app gets its clicks, so a genuine
    click always names the deployment's own repository. A payload naming another one (where the sender may hold
    every right) is not trusted to decide this repository's deployment, whatever its signature."""
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        world.state.add_repo("acme/playground", default_branch="main")
        world.state.set_collaborator("acme/playground", "mallory", "admin")
        payload = check_run_payload(world.state, REPO, world.check_run(LABEL).id, "requested_action",
                                    identifier="approve")  # fmt: skip
        other = world.state.repo("acme/playground")
        payload["repository"].update(full_name=other.full_name, name=other.name, id=other.id)
        payload["sender"]["login"] = "rita"  # a reviewer of acme/api, so only the repository can refuse it
        assert world.send("check_run", payload).status_code in (200, 202)
        world.settle()
        assert world.gate(LABEL).answer is None and world.accepted_answers(REPO) == []
        assert query(database_url, select(Review)) == []  # not an attempt on this deployment at all
