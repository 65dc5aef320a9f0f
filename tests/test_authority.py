"""Who may decide what, through the real app and the sandbox: four eyes on every path to approval, waiver scope
and lifetime, break-glass on one's own deployment, and comments bound to the deployment they answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from github_app import audit, db
from github_app.db.models import DecisionRecord, Deployment, Review, Waiver
from github_app.sandbox.webhooks import issue_comment_payload
from tests.helpers import audit_entries
from tests.scenarios import LABEL, REPO, release_state
from tests.world import World, running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
      break_glass: [dora, rita]
"""
IN_PROGRESS_RULE = "GNG-QUAL-003"  # "Ensure no checks are still running": what escalates these releases


def escalated_world(database_url: str, policy: str = POLICY, **kwargs: Any):
    state = release_state(checks_running=True, policy=policy, team_members=("rita", "dora"), **kwargs)
    return running_world(database_url, state)


def comment(world: World, login: str, body: str, *, delivery_id: str | None = None,
            written: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    payload = issue_comment_payload(world.state, REPO, 7, body, login)
    if written is not None:
        payload["comment"]["created_at"] = written.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert world.send("issue_comment", payload, delivery_id).status_code == 202
    world.settle()
    return payload


def replies(world: World) -> list[str]:
    return [c.body for c in world.state.comments(REPO, 7)]


def deployments(world: World) -> list[Any]:
    return world.query(select(Deployment).order_by(Deployment.id))


def wait_escalated(world: World, count: int) -> None:
    world.wait(lambda: sum(1 for d in deployments(world) if d.state == "escalated") >= count,
               what=f"{count} escalated deployments")  # fmt: skip


def in_days(days: int) -> str:
    return f"{(datetime.now(UTC) + timedelta(days=days)):%Y-%m-%d}"


# --- four eyes on waivers, waiver scope and lifetime --------------------------------------------


def test_the_deployer_cannot_waive_the_rule_that_holds_their_own_deployment(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        comment(world, "dora", f"/gonogo waive {IN_PROGRESS_RULE} until {in_days(5)} e2e is advisory")
        assert world.query(select(Waiver)) == []
        assert world.gate(LABEL).answer is None
        assert any("@dora" in b and "four eyes" in b for b in replies(world))
        [review] = world.query(select(Review))
        assert (review.actor, review.action, review.allowed) == ("dora", "waive", False)
        [attempt] = audit_entries(world.database_url, "review_attempt")
        assert attempt.data["own_deployment"] is True and attempt.data["allowed"] is False
        assert attempt.data["waiver"]["rule_id"] == IN_PROGRESS_RULE


def test_a_waiver_given_on_a_waiting_deployment_covers_its_commit_unless_env_wide(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        sha = world.state.deployment(LABEL)[1].sha
        comment(world, "rita", f"/gonogo waive {IN_PROGRESS_RULE} until {in_days(5)} e2e is advisory")
        [waiver] = world.query(select(Waiver))
        assert waiver.sha == sha and waiver.author == "rita"
        world.wait(lambda: world.gate(LABEL).answer, what="the re-evaluation")
        assert world.gate(LABEL).answer == "approved"
        # a wider scope needs the explicit word, and the same authority
        comment(world, "dora", f"/gonogo waive --env-wide {IN_PROGRESS_RULE} until {in_days(5)} for every release")
        comment(world, "rita", f"/gonogo waive {IN_PROGRESS_RULE} --ENV-WIDE until {in_days(5)} for every release")
        assert [(w.author, w.sha) for w in world.query(select(Waiver).order_by(Waiver.id))] == [
            ("rita", sha), ("rita", None)]  # fmt: skip
        assert any("every commit to production" in b for b in replies(world))


def test_a_waiver_too_long_or_beyond_the_calendar_is_a_refusal_in_words(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        comment(world, "rita", f"/gonogo waive {IN_PROGRESS_RULE} until 9999-12-31 forever")
        comment(world, "rita", f"/gonogo waive {IN_PROGRESS_RULE} until {in_days(45)} long enough")
        assert [d.state for d in world.deliveries() if d.event == "issue_comment"] == ["done", "done"]
        assert world.query(select(Waiver)) == []
        texts = replies(world)
        assert any("9999-12-31" in b and "too far away" in b for b in texts)
        assert any("at most 30d" in b and "waivers.max_lifetime" in b for b in texts)
        assert world.gate(LABEL).answer is None


def test_the_policy_sets_the_longest_waiver(database_url):
    longer = POLICY + "    waivers: {max_lifetime: 8w}\n"
    with escalated_world(database_url, policy=longer) as world:
        world.escalate(LABEL)
        comment(world, "rita", f"/gonogo waive {IN_PROGRESS_RULE} until {in_days(45)} release train is late")
        assert len(world.query(select(Waiver))) == 1


def test_a_shorter_max_lifetime_in_the_policy_ends_waivers_already_given(database_url):
    """The policy in force when gonogo decides bounds every waiver: one counts until its own end or its grant
    plus the current waivers.max_lifetime, whichever comes first, so cutting the cap cuts waivers given before."""
    from sqlalchemy.orm import Session

    from github_app import waivers

    granted = datetime.now(UTC) - timedelta(days=2)
    with escalated_world(database_url) as world:
        engine = db.make_engine(world.database_url)
        try:
            with Session(engine) as session, session.begin():
                waivers.add_waiver(session, REPO, "production", IN_PROGRESS_RULE, None, granted + timedelta(days=27),
                                   "e2e is advisory this month", "rita", now=granted,
                                   author_id=world.state.user_id("rita"))  # fmt: skip
        finally:
            engine.dispose()
        # under the default 30 days the two-day-old waiver counts: the release goes out
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        assert world.gate(LABEL).answer == "approved"
        # then the team cuts waivers to one day: the same waiver, granted two days ago, no longer counts
        world.state.set_file(REPO, "main", ".github/gonogo.yml", POLICY + "    waivers: {max_lifetime: 1d}\n")
        add_second_deployment(world, "second")
        world.request_gate("second")
        second = world.wait(lambda: [d for d in deployments(world)[1:] if d.state in ("escalated", "answered")],
                            what="the second decision")[0]  # fmt: skip
        [decision] = world.query(select(DecisionRecord.data).where(DecisionRecord.id == second.decision_id))
        assert (second.state, world.gate("second").answer) == ("escalated", None), decision[0]["reasons"]
        decision = decision[0]
        finding = next(f for f in decision["findings"] if f["rule_id"] == IN_PROGRESS_RULE)
        assert finding["status"] == "failed" and decision["waivers"] == []
        summary = world.check_run("second").output.get("summary") or ""
        assert "expired under the current max_lifetime" in summary, summary
        assert any("expired under the current max_lifetime" in r for r in decision["reasons"])
        # the stored waiver itself is untouched: its own end stays what its author gave
        [row] = world.query(select(Waiver))
        own_end = row.expires_at.replace(tzinfo=UTC)
        assert row.revoked_at is None and own_end > datetime.now(UTC) + timedelta(days=20)


def test_the_deployer_cannot_approve_under_a_new_login(database_url):
    """GitHub lets anyone rename their account at once; the account (its id) stays the one that deployed."""
    from github_app.sandbox.webhooks import check_run_payload

    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        world.state.rename_user("dora", "dora-elsewhere")  # her team membership and permission follow her
        payload = check_run_payload(world.state, REPO, world.check_run(LABEL).id, "requested_action",
                                    identifier="approve", sender="dora-elsewhere")  # fmt: skip
        assert world.send("check_run", payload).status_code == 202
        world.settle()
        comment(world, "dora-elsewhere", "/gonogo approve my own change, trust me")
        assert world.accepted_answers(REPO) == []
        assert world.gate(LABEL).answer is None
        reviews = world.query(select(Review).order_by(Review.id))
        assert [(r.actor, r.allowed) for r in reviews] == [("dora-elsewhere", False), ("dora-elsewhere", False)]
        assert {r.actor_id for r in reviews} == {world.state.user_id("dora-elsewhere")}  # the account, kept
        assert all("four eyes" in (r.refusal or "") for r in reviews)
        assert all(e.data["own_deployment"] for e in audit_entries(world.database_url, "review_attempt"))


# --- break-glass on one's own deployment ---------------------------------------------------------


def test_break_glass_on_ones_own_deployment_is_refused_by_default_and_audited(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        comment(world, "dora", "/gonogo override hotfix, customers are down")
        assert world.gate(LABEL).answer is None
        assert any("break_glass_self" in b for b in replies(world))
        [entry] = audit_entries(world.database_url, "override")
        assert (entry.actor, entry.data["allowed"], entry.data["own_deployment"]) == ("dora", False, True)
        comment(world, "rita", "/gonogo override hotfix, customers are down")
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]
        assert [(e.actor, e.data["allowed"]) for e in audit_entries(world.database_url, "override")] == [
            ("dora", False), ("rita", True)]  # fmt: skip


def test_a_break_glass_login_without_write_access_cannot_override(database_url):
    """A login in break_glass is only a name: whoever holds it now (a renamed account's login taken by someone
    else, a drive-by commenter on a public repository) must also hold write access to override."""
    policy = POLICY.replace("break_glass: [dora, rita]", "break_glass: [dora, rita, mallory]")
    with escalated_world(database_url, policy=policy) as world:
        world.escalate(LABEL)
        world.state.set_collaborator(REPO, "mallory", "read")
        comment(world, "mallory", "/gonogo override hotfix, customers are down")
        assert world.gate(LABEL).answer is None
        assert any("@mallory" in b and "needs at least write access" in b for b in replies(world))
        [entry] = audit_entries(world.database_url, "override")
        assert (entry.actor, entry.data["allowed"]) == ("mallory", False)
        world.state.set_collaborator(REPO, "mallory", "write")  # granted access: now the override stands
        comment(world, "mallory", "/gonogo override hotfix, customers are still down")
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]


def test_break_glass_on_ones_own_deployment_when_the_policy_allows_it(database_url):
    own = POLICY + "      break_glass_self: true\n"
    with escalated_world(database_url, policy=own) as world:
        world.escalate(LABEL)
        comment(world, "dora", "/gonogo override hotfix, customers are down")
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]
        [entry] = audit_entries(world.database_url, "override")
        assert (entry.actor, entry.data["allowed"], entry.data["own_deployment"]) == ("dora", True, True)
    engine = db.make_engine(database_url)
    assert audit.verify(engine).ok
    engine.dispose()


# --- comments bound to the deployment they answer ------------------------------------------------


def add_second_deployment(world: World, label: str, environment: str = "production") -> None:
    sha = world.state.deployment(LABEL)[1].sha
    dep = world.state.add_deployment(REPO, sha, environment, creator="dora", ref="main")
    world.state.named_deployments[label] = (REPO, dep.id)


def test_a_redelivered_approval_does_not_answer_a_later_deployment(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        approval = comment(world, "rita", "/gonogo approve checked the e2e run by hand", delivery_id="c-1")
        assert world.gate(LABEL).answer == "approved"
        add_second_deployment(world, "second")
        world.request_gate("second")
        wait_escalated(world, 1)
        # the same comment again, under a new delivery id (a redelivery, or a replay)
        assert world.send("issue_comment", approval, "c-2").status_code == 202
        world.settle()
        assert world.gate("second").answer is None
        assert len(world.query(select(Review))) == 1


def test_a_comment_written_before_the_escalation_does_not_answer_it(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        comment(world, "rita", "/gonogo approve looks fine", written=datetime.now(UTC) - timedelta(minutes=5))
        assert world.gate(LABEL).answer is None
        assert any("when this comment was written" in b for b in replies(world))
        [attempt] = audit_entries(world.database_url, "review_attempt")
        assert attempt.actor == "rita" and attempt.data["allowed"] is False and attempt.data["comment_id"]


def test_each_comment_acts_once_even_when_refused(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        payload = comment(world, "eve", "/gonogo approve I think it is fine", delivery_id="e-1")
        assert world.send("issue_comment", payload, "e-2").status_code == 202
        world.settle()
        assert [(r.actor, r.allowed) for r in world.query(select(Review))] == [("eve", False)]
        assert sum("@eve" in b for b in replies(world)) == 1


def test_several_waiting_deployments_need_the_environment_named(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        add_second_deployment(world, "staging", environment="staging")
        world.request_gate("staging")
        wait_escalated(world, 2)
        comment(world, "rita", "/gonogo approve checked by hand")
        assert world.gate(LABEL).answer is None and world.gate("staging").answer is None
        assert any("several deployments" in b and "`production`" in b and "`staging`" in b for b in replies(world))
        comment(world, "rita", "/gonogo approve production checked by hand")
        assert world.gate(LABEL).answer == "approved" and world.gate("staging").answer is None
        comment(world, "rita", "/GONOGO APPROVE Staging checked by hand too")
        assert world.gate("staging").answer == "approved"
        comments = [r.comment for r in world.accepted_answers(REPO)]
        assert comments == ["Approved by @rita: checked by hand", "Approved by @rita: checked by hand too"]


def test_one_environment_with_two_waiting_commits_is_told_apart_by_sha():
    from github_app.features.escalation import _choose

    def row(environment: str, sha: str) -> Deployment:
        return Deployment(environment=environment, sha=sha)

    newest, older, staging = row("production", "b" * 40), row("production", "a" * 40), row("staging", "a" * 40)
    assert _choose([newest, older, staging], None) == (None, ["production@aaaaaaa", "production@bbbbbbb",
                                                               "staging@aaaaaaa"])  # fmt: skip
    assert _choose([newest, older, staging], "production") == (None, ["production@aaaaaaa", "production@bbbbbbb"])
    assert _choose([newest, older, staging], "PRODUCTION@aaaa") == (older, [])
    assert _choose([newest, older, staging], "staging") == (staging, [])
    assert _choose([newest, row("production", "b" * 40)], None) == (newest, [])  # a re-run of one commit: the newest


def test_every_button_attempt_is_audited_with_where_it_came_from(database_url):
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        run = world.check_run(LABEL)
        for login in ("eve", "dora", "rita"):
            assert world.click(LABEL, login).status_code == 202
            world.settle()
        attempts = [(e.actor, e.data["allowed"], e.data["source"], e.data["check_run_id"], e.data["own_deployment"])
                    for e in audit_entries(world.database_url, "review_attempt")]  # fmt: skip
        assert attempts == [("eve", False, "check_run_button", run.id, False), ("dora", False, "check_run_button", run.id, True),
                            ("rita", True, "check_run_button", run.id, False)]  # fmt: skip
        assert "four eyes" in audit_entries(world.database_url, "review_attempt")[1].data["refusal"]
        assert [r.state for r in world.accepted_answers(REPO)] == ["approved"]


# --- four eyes on waivers the deployer gives elsewhere --------------------------------------------


def escalate_colleagues_release(world: World, label: str = "alice") -> str:
    """Alice's release of another commit on pull request 8, escalated by its running e2e check; its sha."""
    base = world.state.deployment(LABEL)[1].sha
    other = world.state.add_commit(REPO, message="Fix a typo", author="alice", branch="main", parents=[base])
    world.state.add_check_run(REPO, other.sha, "e2e", status="in_progress", conclusion=None)
    world.state.add_pull_request(REPO, 8, head_sha=other.sha, head_ref="typo", title="Fix a typo", user="alice")
    dep = world.state.add_deployment(REPO, other.sha, "production", creator="alice", ref="main")
    world.state.named_deployments[label] = (REPO, dep.id)
    world.escalate(label)
    return other.sha


def comment_on(world: World, number: int, login: str, body: str) -> None:
    payload = issue_comment_payload(world.state, REPO, number, body, login)
    assert world.send("issue_comment", payload).status_code == 202
    world.settle()


def decide_rerun(world: World) -> Deployment:
    """Request the gate for the "rerun" deployment and wait for its decision; its row."""
    before = {d.id for d in deployments(world)}
    world.request_gate("rerun")
    return world.wait(lambda: next((d for d in deployments(world) if d.id not in before
                                    and d.state in ("escalated", "answered")), None), what="the re-run's decision")


def rerun_reasons(world: World, row: Deployment) -> list[str]:
    [data] = world.query(select(DecisionRecord.data).where(DecisionRecord.id == row.decision_id))
    return list(data[0]["reasons"])


def test_the_deployer_cannot_waive_their_own_commit_through_a_colleagues_deployment(database_url):
    """Four eyes: dora, refused a waiver on her own release, names her commit on alice's waiting deployment
    (`for <sha>`), then re-runs her release: her own waiver must not pass it."""
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        own_sha = world.state.deployment(LABEL)[1].sha
        escalate_colleagues_release(world)
        comment_on(world, 8, "dora", f"/gonogo waive {IN_PROGRESS_RULE} for {own_sha} until {in_days(5)} advisory")
        [waiver] = world.query(select(Waiver))
        assert (waiver.author, waiver.sha) == ("dora", own_sha)  # a reviewer may waive a colleague's commit
        add_second_deployment(world, "rerun")  # dora runs her release again
        rerun = decide_rerun(world)
        assert world.gate("rerun").answer is None and rerun.state == "escalated"
        assert any("four eyes" in r and "@dora" in r for r in rerun_reasons(world, rerun))


def test_an_env_wide_waiver_does_not_pass_its_authors_own_deployments(database_url):
    """Four eyes: an `--env-wide` waiver dora gives on alice's deployment covers alice's, never dora's, even
    after dora renames her account."""
    with escalated_world(database_url) as world:
        world.escalate(LABEL)
        escalate_colleagues_release(world)
        comment_on(world, 8, "dora", f"/gonogo waive {IN_PROGRESS_RULE} --env-wide until {in_days(5)} e2e is advisory")
        [waiver] = world.query(select(Waiver))
        assert (waiver.author, waiver.sha) == ("dora", None)  # allowed: alice's deployment is not dora's
        world.state.rename_user("dora", "dora-elsewhere")
        sha = world.state.deployment(LABEL)[1].sha
        dep = world.state.add_deployment(REPO, sha, "production", creator="dora-elsewhere", ref="main")
        world.state.named_deployments["rerun"] = (REPO, dep.id)
        rerun = decide_rerun(world)
        assert world.gate("rerun").answer is None and rerun.state == "escalated"
        assert any("four eyes" in r and "@dora-elsewhere" in r for r in rerun_reasons(world, rerun))
