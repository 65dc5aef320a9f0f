"""Only the right human decides, exactly once: a listed login needs repository access when it acts, and a
reviewer whose answer came second is told so and is not recorded as having decided.

Through the real app and the sandbox over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from github_app.db.models import Deployment
from github_app.sandbox.webhooks import check_run_payload
from tests.helpers import audit_entries, execute
from tests.scenarios import LABEL, REPO, TEAM, comment, release_state, replies, reviews
from tests.world import World, running_world

# the relaxed pack sets no reviewers.min_permission
RELAXED = """
extends: relaxed
environments:
  production:
    reviewers:
      users: [rita, lena]
      four_eyes: true
"""


def test_a_listed_reviewer_without_repository_access_does_not_decide(database_url):
    """A login in reviewers.users is only a name: with no min_permission set, it still needs write access."""
    state = release_state(checks_running=True, policy=RELAXED, reviewers_team="")
    state.user("lena")  # an account named in the policy, never (or no longer) given access to the repository
    with running_world(database_url, state) as world:
        world.escalate(LABEL)
        comment(world, "lena", "/gonogo approve looks fine")
        assert world.gate(LABEL).answer is None
        [refused] = reviews(world)
        assert (refused.actor, refused.allowed) == ("lena", False)
        assert "needs at least write access" in (refused.refusal or "")
        assert any("@lena" in b and "cannot approve" in b and "at least write access" in b for b in replies(world))
        # a listed reviewer whose access was lowered to read between the escalation and the click
        world.state.set_collaborator(REPO, "rita", "read")
        world.click(LABEL, "rita")
        world.settle()
        assert world.gate(LABEL).answer is None
        assert [(r.actor, r.allowed) for r in reviews(world)] == [("lena", False), ("rita", False)]
        # given write access, the same login decides
        world.state.set_collaborator(REPO, "lena", "write")
        comment(world, "lena", "/gonogo approve looks fine now")
        world.wait(lambda: world.gate(LABEL).answer, what="lena's approval")
        assert world.gate(LABEL).answer == "approved"
        assert "lena" in world.accepted_answers(REPO)[0].comment


def test_a_policy_may_name_a_lower_level_for_its_reviewers(database_url):
    """min_permission stays the policy's word: read lets a listed reviewer with read access decide."""
    state = release_state(checks_running=True, policy=RELAXED + "      min_permission: read\n", reviewers_team="")
    state.set_collaborator(REPO, "lena", "read")
    with running_world(database_url, state) as world:
        world.escalate(LABEL)
        comment(world, "lena", "/gonogo reject not today")
        world.wait(lambda: world.gate(LABEL).answer, what="lena's rejection")
        assert world.gate(LABEL).answer == "rejected"


def team_world(database_url: str):
    state = release_state(checks_running=True, policy=TEAM, team_members=("rita", "sam"))
    state.set_collaborator(REPO, "sam", "write")
    return running_world(database_url, state)


def click_payload(world: World, login: str, identifier: str) -> dict[str, Any]:
    return check_run_payload(world.state, REPO, world.check_run(LABEL).id, "requested_action", identifier=identifier,
                             sender=login)  # fmt: skip


def test_a_reject_after_an_accepted_approve_is_refused_and_said_so(database_url):
    with team_world(database_url) as world:
        world.escalate(LABEL)
        approve, reject = click_payload(world, "rita", "approve"), click_payload(world, "sam", "reject")
        assert world.send("check_run", approve).status_code == 202
        world.settle()
        assert world.send("check_run", reject).status_code == 202  # the button of the page sam still had open
        world.settle()
        assert [(r.state, r.comment) for r in world.accepted_answers(REPO)] == [
            ("approved", "Approved by @rita: via the check run button")]  # fmt: skip
        assert [(r.actor, r.action, r.allowed) for r in reviews(world)] == [
            ("rita", "approve", True), ("sam", "reject", False)]  # fmt: skip
        assert "already approved" in (reviews(world)[1].refusal or "")
        attempts = {e.actor: e.data for e in audit_entries(world.database_url, "review_attempt")}
        assert attempts["sam"]["allowed"] is False and "already approved" in attempts["sam"]["refusal"]
        assert any(b.startswith("@sam your reject was not applied") and "already approved" in b and "@rita" in b
                   for b in replies(world))  # fmt: skip
        [row] = world.query(select(Deployment))
        assert (row.state, row.answer, row.human_reviewed) == ("answered", "approved", True)


def test_approve_and_reject_at_the_same_moment_one_decides_and_the_other_is_told(database_url):
    with team_world(database_url) as world:
        world.escalate(LABEL)
        clicks = [click_payload(world, "rita", "approve"), click_payload(world, "sam", "reject")]
        threads = [threading.Thread(target=world.send, args=("check_run", p)) for p in clicks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        world.settle()
        [sent] = world.accepted_answers(REPO)  # exactly one answer reached GitHub
        winner, loser = ("rita", "sam") if sent.state == "approved" else ("sam", "rita")
        assert f"@{winner}" in sent.comment
        [stored] = [e for e in audit_entries(world.database_url, "answer") if e.data["stage"] == "stored"]
        assert (stored.actor, stored.data["state"]) == (winner, sent.state)
        by_actor = {r.actor: r for r in reviews(world)}
        assert by_actor[winner].allowed is True and by_actor[winner].refusal is None
        assert by_actor[loser].allowed is False and f"already {sent.state}" in (by_actor[loser].refusal or "")
        assert any(b.startswith(f"@{loser} your") and "not applied" in b for b in replies(world))


def test_an_approve_after_githubs_thirty_days_answers_nothing(database_url):
    """GitHub fails a run that waited 30 days on a protection rule: a click before the sweeper noticed decides nothing."""
    with team_world(database_url) as world:
        world.escalate(LABEL)
        [row] = world.query(select(Deployment))
        execute(database_url, update(Deployment).values(created_at=row.created_at - timedelta(days=30, minutes=1)))
        world.click(LABEL, "rita")
        world.settle()
        assert world.accepted_answers(REPO) == []
        [row] = world.query(select(Deployment))
        assert (row.state, row.answer, row.human_reviewed) == ("abandoned", None, False)
        [attempt] = reviews(world)
        assert attempt.allowed is False and "no longer waits" in (attempt.refusal or "")
        assert "no longer waits" in replies(world)[-1]
        assert (world.check_run(LABEL).conclusion, world.check_run(LABEL).actions) == ("neutral", [])
