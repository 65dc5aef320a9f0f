"""Property: whatever the interleaving of deliveries, comments, clicks, redeliveries and killed handlers,
each deployment gets exactly one answer at GitHub, never an approval the policy forbids, and every act
is in the audit log.

The handlers run in this process against the sandbox over real HTTP, so a "kill" can cancel one at any
await point (a worker process dying there); each example's events are then redelivered until the
deployment settles, as the inbox and the sweeper would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from github_app import db
from github_app.db.models import AuditEntry, DecisionRecord, Deployment, Review
from github_app.features import default_router
from github_app.github import GitHubClients
from github_app.routing import Context, Event, RetryLater
from github_app.sandbox import SandboxState, running_sandbox
from github_app.sandbox.webhooks import (
    check_run_payload,
    deployment_protection_rule_payload,
    issue_comment_payload,
)
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.scenarios import REPO, release_state

pytestmark = pytest.mark.slow

# production escalates (a check is still running); staging makes that a blocker, so gonogo says no-go
POLICY = """
environments:
  production:
    reviewers: {teams: [acme/sre], four_eyes: true, break_glass: [boss]}
  staging:
    reviewers: {teams: [acme/sre], four_eyes: true, break_glass: [boss]}
    rules:
      GNG-QUAL-003: {severity: blocker}
"""
COMMANDS = {
    "rita-approve": ("rita", "/gonogo approve looks fine"),
    "rita-reject": ("rita", "/gonogo reject not today"),
    "dora-approve": ("dora", "/gonogo approve my own change"),  # the deployer: four eyes
    "eve-approve": ("eve", "/gonogo approve drive-by"),  # not a reviewer
    "rita-override": ("rita", "/gonogo override no rights"),  # no break-glass rights
    "boss-override": ("boss", "/gonogo override outage fix"),
}
# no shrinking: each example runs real handlers for seconds; the failing example is printed as generated
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
step = st.tuples(
    st.sampled_from(["deliver", "comment", "comment", "click", "sweep"]),
    st.sampled_from(sorted(COMMANDS)),
    st.integers(0, 300),  # ms after the previous step
    st.one_of(st.none(), st.integers(0, 900)),  # ms after its start the handler is killed, or None
)


class Harness:
    def __init__(self, state: SandboxState, ctx: Context) -> None:
        self.state = state
        self.ctx = ctx
        self.router = default_router()
        self.seq = 0

    def event(self, name: str, payload: dict[str, Any]) -> Event:
        self.seq += 1
        action = payload.get("action")
        return Event(name, action, f"prop-{self.seq}", payload["installation"]["id"], payload)

    async def dispatch(self, ev: Event) -> None:
        try:
            await self.router.dispatch(self.ctx, ev)
        except RetryLater:
            pass  # parked in the inbox: the settling loop below redelivers

    def make(self, kind: str, command: str, dep_id: int) -> Event:
        if kind == "deliver":
            return self.event("deployment_protection_rule",
                              deployment_protection_rule_payload(self.state, dep_id, full_name=REPO))  # fmt: skip
        login, body = COMMANDS[command]
        if kind == "click":
            runs = self.state.check_runs(REPO, name="gonogo")
            if runs:
                identifier = "reject" if "reject" in command else "approve"
                payload = check_run_payload(self.state, REPO, runs[-1].id, "requested_action", identifier=identifier,
                                            sender=login)  # fmt: skip
                return self.event("check_run", payload)
        return self.event("issue_comment", issue_comment_payload(self.state, REPO, 7, body, login))

    async def run(self, steps: list[tuple[str, str, int, int | None]], deps: list[Any]) -> None:
        dep_ids = [d.id for d in deps]
        run_ids = [d.run_id for d in deps]
        tasks = []
        for i, (kind, command, wait_ms, kill_ms) in enumerate(steps):
            await asyncio.sleep(wait_ms / 1000)
            if kind == "sweep":
                from github_app.features.escalation import sweep
                from github_app.features.gate import recover_stuck

                task = asyncio.ensure_future(asyncio.gather(sweep(self.ctx), recover_stuck(self.ctx)))
            else:
                task = asyncio.ensure_future(self.dispatch(self.make(kind, command, dep_ids[i % len(dep_ids)])))
            if kill_ms is not None:
                asyncio.get_running_loop().call_later(kill_ms / 1000, task.cancel)
            tasks.append(task)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        assert not errors, errors
        # settle: what the inbox's retries and the sweeper do after the kills
        for _ in range(100):
            states = await asyncio.to_thread(deployment_states, self.ctx.engine, run_ids)
            if all(s in ("answered", "escalated") for s in states.values()) and len(states) == len(dep_ids):
                return
            for dep_id in dep_ids:
                await self.dispatch(self.make("deliver", "", dep_id))
            await asyncio.sleep(0.2)
        raise AssertionError(f"deployments did not settle: {states}")


def deployment_states(engine: Engine, run_ids: list[int]) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Deployment.key, Deployment.state).where(Deployment.run_id.in_(run_ids))).all())


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[SandboxState, Context]]:
    state = release_state(checks_running=True, policy=POLICY, team_members=("rita", "boss", "dora"))
    state.set_collaborator(REPO, "boss", "admin")
    # slow evidence keeps each evaluation open long enough for comments and clicks to land inside it
    state.inject("GET", "/repos/acme/api/commits/*/check-runs", "latency", seconds=0.6, times=None)
    assert state.app is not None and state.app.private_key_pem
    with running_sandbox(state) as sandbox:
        cfg = make_settings(database_url, app_id=str(state.app.id), private_key=Secret(state.app.private_key_pem),
                            github_api_url=sandbox.url, lease_seconds=1.0)  # fmt: skip
        engine = db.make_engine(database_url)
        try:
            yield state, Context(cfg, engine, {})
        finally:
            engine.dispose()


def test_any_interleaving_gives_one_allowed_answer_per_deployment_and_audits_it(world):
    state, ctx = world
    repo = state.repo(REPO)
    head = repo.branches["main"]

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), phases=PHASES)
    @given(envs=st.lists(st.sampled_from(["production", "staging"]), min_size=1, max_size=2),
           steps=st.lists(step, min_size=1, max_size=7))  # fmt: skip
    def example(envs: list[str], steps: list[tuple[str, str, int, int | None]]) -> None:
        deps = [state.add_deployment(REPO, head, env, creator="dora") for env in envs]
        steps = [*[("deliver", "", 0, None)] * len(deps), *steps]  # GitHub sends each request at least once

        async def go() -> None:
            ctx.github = GitHubClients(ctx.settings)  # its connections belong to this example's event loop
            harness = Harness(state, ctx)
            try:
                await harness.run(steps, deps)
            finally:
                await ctx.github.aclose()

        asyncio.run(go())
        check(ctx.engine, state, deps)

    example()


def check(engine: Engine, state: SandboxState, deps: list[Any]) -> None:
    repo = state.repo(REPO)
    with engine.connect() as conn:
        for dep in deps:
            gate = repo.gates[(dep.run_id, dep.environment)]
            took = [r for r in gate.history if r.state is not None and r.accepted]
            key = conn.execute(select(Deployment.key, Deployment.state, Deployment.id)
                               .where(Deployment.run_id == dep.run_id)).one()  # fmt: skip
            actions = {a for (a,) in conn.execute(select(DecisionRecord.action).where(DecisionRecord.deployment_id == key.id))}
            entries = list(conn.execute(select(AuditEntry).where(AuditEntry.deployment_key == key.key)))
            if key.state == "escalated":
                assert took == [] and gate.waiting, gate.history
                continue
            assert key.state == "answered"
            assert len(took) == 1, gate.history  # exactly one answer reached GitHub
            answer = took[0]
            if answer.state == "approved":
                # staging is a no-go by policy: only a break-glass override may approve it; nobody approves
                # their own deployment or one they may not review; an override is audited as one
                by_override = "override" in answer.comment and "@boss" in answer.comment
                assert dep.environment == "production" or by_override, (dep.environment, answer)
                assert "reject" not in actions or by_override
                assert "@dora" not in answer.comment and "@eve" not in answer.comment
                if "override" in answer.comment:
                    assert by_override and any(e.kind == "override" and e.actor == "boss" for e in entries)
            if "reject" in actions:
                assert answer.state == "rejected", (actions, answer)
            sent = [e for e in entries if e.kind == "answer" and e.data.get("stage") == "sent"]
            assert any(e.data["state"] == answer.state for e in sent), entries  # gonogo's act is in the log
        reviews = conn.execute(select(func.count()).select_from(Review)).scalar_one()
        attempts = conn.execute(select(func.count()).where(AuditEntry.kind == "review_attempt",
                                                           AuditEntry.deployment_key.is_not(None))).scalar_one()
        # every human attempt that reached a deployment, allowed or refused, is audited (commands refused before
        # reaching one, as stale or ambiguous, are audited too, without a deployment)
        assert reviews == attempts
