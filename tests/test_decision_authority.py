"""Only the right human decides, exactly once: a listed login needs repository access when it acts, and a
reviewer whose answer came second is told so and is not recorded as having decided.

Through the real app and the sandbox over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from github_app.db.models import Review
from github_app.sandbox.webhooks import issue_comment_payload
from tests.scenarios import LABEL, REPO, release_state
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
TEAM = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
"""


def comment(world: World, login: str, body: str) -> None:
    payload = issue_comment_payload(world.state, REPO, 7, body, login)
    assert world.send("issue_comment", payload).status_code == 202
    world.settle()


def replies(world: World) -> list[str]:
    return [c.body for c in world.state.comments(REPO, 7)]


def reviews(world: World) -> list[Any]:
    return world.query(select(Review).order_by(Review.id))


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
