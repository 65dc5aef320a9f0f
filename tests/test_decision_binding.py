"""Only the right human decides, exactly once: an answer is bound to the policy that names its reviewers and to
the run attempt that waits for it.

Through the real app and the sandbox over HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from github_app.db.models import Deployment, Review
from github_app.sandbox.webhooks import issue_comment_payload
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

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


def rows(world: World) -> list[Any]:
    return world.query(select(Deployment).order_by(Deployment.id))


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
