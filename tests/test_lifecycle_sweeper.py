"""The escalation sweeper: the real default branch, conditional policy reads, ended runs, one reminder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from github_app.db.models import AuditEntry, Deployment
from github_app.features.escalation import sweep
from github_app.sandbox.webhooks import workflow_run_payload
from tests.helpers import deployment_row, execute, query
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      remind_after: 1h
      expire_after: 5h
"""
CONTENTS = "/repos/acme/api/contents/.github/gonogo.yml"


def master_world(database_url: str):
    """A repository whose default branch is `master`; its policy lives there and nowhere else."""
    state = release_state(checks_running=True, team_members=("rita",))
    repo = state.repo(REPO)
    repo.default_branch = "master"
    repo.branches["master"] = repo.branches["main"]
    state.set_file(REPO, "master", ".github/gonogo.yml", POLICY)
    return running_world(database_url, state)


def sweeps(world: World, *moments: timedelta, contexts: int = 1) -> list[dict[str, int]]:
    """Run the sweeper at these times from now, ``contexts`` processes at once for each."""
    ctxs = [world.app_context() for _ in range(contexts)]
    start = datetime.now(UTC)

    async def run() -> list[dict[str, int]]:
        out = []
        try:
            for later in moments:
                results = await asyncio.gather(*(sweep(c, now=start + later) for c in ctxs))
                out.append({k: sum(r[k] for r in results) for k in results[0]})
        finally:
            for c in ctxs:
                await c.services["github"].aclose()
        return out

    try:
        return asyncio.run(run())
    finally:
        for c in ctxs:
            c.engine.dispose()


def test_the_sweeper_reads_the_policy_of_the_real_default_branch(database_url):
    with master_world(database_url) as world:
        world.escalate(LABEL)
        assert deployment_row(database_url).default_branch == "master"
        assert sweeps(world, timedelta(hours=6)) == [{"reminded": 0, "expired": 1}]  # master's expire_after: 5h
        assert world.gate(LABEL).answer == "rejected"


def test_an_unchanged_policy_is_read_with_a_304_and_a_changed_one_is_used(database_url):
    with master_world(database_url) as world:
        world.escalate(LABEL)
        world.state.clear_calls()
        assert sweeps(world, timedelta(minutes=10), timedelta(minutes=20)) == [{"reminded": 0, "expired": 0}] * 2
        reads = world.state.calls("GET", CONTENTS)
        assert reads and {c.status for c in reads} == {304}  # same file: GitHub is asked "changed since?" only
        world.state.set_file(REPO, "master", ".github/gonogo.yml", POLICY.replace("expire_after: 5h", "expire_after: 15m"))
        world.state.clear_calls()
        assert sweeps(world, timedelta(minutes=30)) == [{"reminded": 0, "expired": 1}]
        assert [c.status for c in world.state.calls("GET", CONTENTS)][:1] == [200]


def test_two_sweepers_at_once_remind_once(database_url):
    with master_world(database_url) as world:
        world.escalate(LABEL)
        assert sweeps(world, timedelta(hours=2), timedelta(hours=3), contexts=3) == [
            {"reminded": 1, "expired": 0}, {"reminded": 0, "expired": 0},
        ]  # fmt: skip
        reminders = [c for c in world.state.comments(REPO, 7) if "Reminder" in c.body]
        assert len(reminders) == 1
    kinds = [k for (k,) in query(database_url, select(AuditEntry.kind))]
    assert kinds.count("reminder") == 1


def test_a_completed_workflow_run_ends_its_escalation(database_url):
    with master_world(database_url) as world:
        world.escalate(LABEL)
        repo, dep = world.state.deployment(LABEL)
        world.state.end_run(repo.full_name, dep.run_id, "cancelled")
        assert world.send("workflow_run", workflow_run_payload(world.state, REPO, dep.run_id)).status_code == 202
        world.wait(lambda: deployment_row(database_url).state == "abandoned", what="the escalation to be abandoned")
        world.settle()
        assert (world.check_run(LABEL).conclusion, world.check_run(LABEL).actions) == ("neutral", [])  # no buttons
        world.state.clear_calls()
        assert sweeps(world, timedelta(hours=6)) == [{"reminded": 0, "expired": 0}]
        assert world.state.calls() == []  # nothing polled for it any more
        assert world.gate(LABEL).answer is None


def test_an_escalation_past_githubs_30_days_is_abandoned_not_polled(database_url):
    with master_world(database_url) as world:
        world.escalate(LABEL)
        execute(database_url, update(Deployment).values(created_at=datetime.now(UTC) - timedelta(days=31)))
        world.state.clear_calls()
        assert sweeps(world, timedelta(0)) == [{"reminded": 0, "expired": 0}]
        # nothing polled (no policy, no teams): the one call takes the buttons off its check run
        calls = [(c.method, c.path) for c in world.state.calls() if not c.path.endswith("/access_tokens")]
        assert calls == [("PATCH", f"/repos/{REPO}/check-runs/{world.check_run(LABEL).id}")]
        assert (world.check_run(LABEL).conclusion, world.check_run(LABEL).actions) == ("neutral", [])
        assert deployment_row(database_url).state == "abandoned"
