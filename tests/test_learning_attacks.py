"""Thresholds that learn from outcomes, attacked: what a deployer can do alone must never make the record vouch.

The deployer (dora) can push, run workflows and post deployment statuses with the workflow's token, but is
not a reviewer. Each test builds the record the way the app stores it (earlier deployments and their history
rows, approvals as allowed reviews) or through the app's own webhooks, then sends the large release through
the real gate over HTTP. The record must vouch only for releases the gate let through, approved by someone
other than the deployer, once per commit and per day, in this repository and environment alone.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from github_app import db
from github_app.db.models import DecisionRecord, HistoryRow, Outcome, Review
from github_app.sandbox.webhooks import check_run_payload, deployment_status_payload
from tests.scenarios import LABEL, REPO, release_state
from tests.test_learned_thresholds import BIG_CHANGE, POLICY, _seed, big_release, in_working_hours
from tests.world import World, running_world


def _commits(state, n: int) -> list[str]:
    """``n`` earlier commits of the repository (on a branch off the last release), so statuses can name them."""
    repo = state.repo(REPO)
    base = repo.commits[repo.branches["main"]].parents[0]
    shas = [state.add_commit(REPO, message="Large change 0", author="dora", parents=[base], branch="history").sha]
    shas += [state.add_commit(REPO, message=f"Large change {i}", author="dora", branch="history").sha
             for i in range(1, n)]  # fmt: skip
    return shas


def _post_status(world: World, sha: str, state: str, *, replays: int = 0) -> int:
    """The deployer's workflow posts a deployment status for a deployment of ``sha``; GitHub sends the webhook.

    ``replays``: the same delivery again, then the same content under new delivery ids. Returns the status id.
    """
    dep = world.state.add_deployment(REPO, sha, "production", creator="dora", waiting=False)
    status = world.state.add_deployment_status(REPO, dep.id, state, creator="dora")
    payload = deployment_status_payload(world.state, dep.id, full_name=REPO)
    delivery = f"status-{status.id}"
    for i in range(1 + replays):
        response = world.send("deployment_status", payload, delivery if i < 2 else f"{delivery}-again-{i}")
        assert response.status_code in (200, 202), response.text
    return status.id


def _decide(world: World, label: str = LABEL):
    """Send the label's deployment through the gate; its answer and the summary of its (new) check run."""
    repo, dep = world.state.deployment(label)

    def completed() -> list:
        return [r for r in world.state.check_runs(repo.full_name, name="gonogo", head_sha=dep.sha)
                if r.status == "completed"]  # fmt: skip

    before = len(completed())
    world.request_gate(label)
    world.wait(lambda: len(completed()) > before, what=f"a decision on {label}")
    return world.gate(label), completed()[-1].output["summary"]


def _last_decision(database_url: str) -> dict:
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        data = conn.execute(select(DecisionRecord.data).order_by(DecisionRecord.id.desc()).limit(1)).scalar_one()
    engine.dispose()
    return data


def test_success_statuses_on_escalations_nobody_approved_vouch_for_nothing(database_url):
    """Twenty large changes escalated and left waiting; the deployer's workflow marks each deployed fine."""
    state = big_release()
    shas = _commits(state, 20)
    _seed(database_url, [None] * 20, answer=None, shas=shas)
    with running_world(database_url, state) as world:
        for sha in shas:
            _post_status(world, sha, "success")
        world.settle()
        stored = world.query(select(func.count()).select_from(Outcome).where(Outcome.outcome == "success"))
        labelled = world.query(select(func.count()).select_from(HistoryRow).where(HistoryRow.outcome == "success"))
        assert stored[0][0] == 20  # the statuses were stored as outcomes
        assert labelled[0][0] == 0  # but label no row gonogo did not let through (the model would learn from them)
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "GNG-CHG-001: still escalates" in summary and "0 of the 20 outcomes needed" in summary
    [record] = [r for r in _last_decision(database_url)["learning"] if r["rule_id"] == "GNG-CHG-001"]
    assert record["flagged"] == 20 and record["deployed"] == 0 and not record["relaxed"]


def test_reruns_of_one_commit_count_once(database_url):
    """The same large commit deployed, approved and reported fine 25 times is one observation."""
    _seed(database_url, ["success"] * 25, shas=["ab" * 20] * 25)
    with running_world(database_url, big_release()) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "1 of the 20 outcomes needed" in summary


def test_a_burst_of_escalations_approved_in_one_sitting_counts_once_a_day(database_url):
    """Many small escalations a reviewer approved three minutes apart teach one day's worth, not 25."""
    _seed(database_url, ["success"] * 25, step=timedelta(minutes=3))
    with running_world(database_url, big_release()) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "1 of the 20 outcomes needed" in summary or "2 of the 20 outcomes needed" in summary  # may span midnight


def test_the_deployers_own_approvals_vouch_for_nothing(database_url):
    """With four eyes off on the default branch the deployer may approve their own escalation; it counts against."""
    policy = POLICY + "    reviewers: {four_eyes: false}\n"
    _seed(database_url, ["success"] * 20, approver="dora")
    with running_world(database_url, release_state(extra_files=BIG_CHANGE, policy=policy)) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "reviewers approved 0 of 20" in summary


def test_the_deployers_own_approvals_under_a_new_login_vouch_for_nothing(database_url):
    """Renamed, the deployer approved their own escalations (four eyes off): the account id says it was them."""
    policy = POLICY + "    reviewers: {four_eyes: false}\n"
    _seed(database_url, ["success"] * 20, approver="dora-elsewhere", approver_id=4711, creator_id=4711)
    with running_world(database_url, release_state(extra_files=BIG_CHANGE, policy=policy)) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "reviewers approved 0 of 20" in summary


def test_another_accounts_approvals_still_vouch(database_url):
    """The same record approved by another account (another id) vouches as before: the id only tells people apart."""
    policy = POLICY + "    reviewers: {four_eyes: false}\n"
    _seed(database_url, ["success"] * 20, approver="rita", approver_id=5150, creator_id=4711)
    with running_world(database_url, release_state(extra_files=BIG_CHANGE, policy=policy)) as world:
        _, summary = _decide(world)
    assert "reviewers approved 20 of 20" in summary, summary[:3000]


def test_the_deployer_cannot_approve_their_own_escalation_to_build_a_record(database_url):
    """Under four eyes (the default) the deployer's click is refused and stored as refused: no approval."""
    with running_world(database_url, big_release()) as world:
        world.escalate(LABEL)
        assert world.click(LABEL, "dora").status_code in (200, 202)
        world.settle()
        reviews = world.query(select(Review.actor, Review.action, Review.allowed))
        gate = world.gate(LABEL)
    assert [(r.actor, r.action, r.allowed) for r in reviews] == [("dora", "approve", False)]
    assert gate.answer is None and gate.waiting


def test_a_rerun_keeps_the_relaxation_and_failures_withdraw_it(database_url):
    """Relaxed, then a re-run of the same release is relaxed again; once it and four earlier ones fail, no more.

    The failures arrive as deployment_status webhooks, each replayed under its own delivery id and under new
    ones: a replay is the same outcome, counted once. The release's own failure counts against its next re-run.
    """
    state = big_release()
    shas = _commits(state, 20)
    _seed(database_url, ["success"] * 20, shas=shas)
    head = state.deployment(LABEL)[1].sha
    for name in ("rerun", "after-failures"):
        state.named_deployments[name] = (REPO, state.add_deployment(REPO, head, "production", creator="dora").id)
    in_working_hours(state)
    with running_world(database_url, state) as world:
        first, summary = _decide(world)
        assert first.answer == "approved", summary[:3000]
        again, summary = _decide(world, "rerun")
        assert again.answer == "approved", summary[:3000]  # its own earlier attempt, without an outcome, changes nothing
        for sha in [head, *shas[:4]]:
            _post_status(world, sha, "failure", replays=3)
        _post_status(world, shas[0], "success", replays=1)  # a later success never hides a failure
        world.settle()
        outcomes = world.query(select(Outcome.outcome, func.count()).where(Outcome.sha.in_([head, *shas]))
                               .group_by(Outcome.outcome))  # fmt: skip
        last, summary = _decide(world, "after-failures")
    assert {o: n for o, n in outcomes} == {"failure": 5, "success": 1}
    assert last.answer is None and last.waiting, summary[:3000]
    assert "GNG-CHG-001: still escalates" in summary and "5 of 21 failed" in summary  # the release's two attempts: one


def test_a_re_evaluation_reads_the_record_afresh(database_url):
    """Escalated one outcome short; the missing outcome arrives and the check run is re-run: relaxed now."""
    state = big_release()
    shas = _commits(state, 20)
    _seed(database_url, ["success"] * 19 + [None], shas=shas)
    with running_world(database_url, state) as world:
        gate, summary = _decide(world)
        assert gate.answer is None and gate.waiting and "19 of the 20 outcomes needed" in summary, summary[:3000]
        _post_status(world, shas[-1], "success")
        world.settle()
        run = world.check_run(LABEL)
        response = world.send("check_run", check_run_payload(world.state, REPO, run.id, "rerequested", sender="rita"))
        assert response.status_code in (200, 202), response.text
        world.settle()
        gate = world.wait(lambda: world.gate(LABEL) if world.gate(LABEL).answer else None, what="the re-evaluation")
        summary = world.check_run(LABEL).output["summary"]
    assert gate.answer == "approved", summary[:3000]
    assert "20 of 20 earlier deployments" in summary


@pytest.mark.parametrize(
    ("repository", "environment"),
    [("ACME/api", "production"), ("acme/api", "Production"), ("acme/api", "production "), ("acme/api", "staging"),
     ("acme/api-fork", "production")],
)
def test_another_repository_or_environment_never_lends_its_record(database_url, repository, environment):
    _seed(database_url, ["success"] * 20, repository=repository, environment=environment)
    with running_world(database_url, big_release()) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    [record] = [r for r in _last_decision(database_url)["learning"] if r["rule_id"] == "GNG-CHG-001"]
    assert record["flagged"] == 0 and not record["relaxed"] and "0 of the 20 outcomes needed" in record["why"]


def test_an_unreadable_record_relaxes_nothing_and_says_why(database_url):
    """A history row the database cannot read back: the record is not read, nothing relaxed, the reason shown."""
    shas = _seed(database_url, ["success"] * 20)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # valid json text, but ->> cannot turn \u0000 into text
            conn.execute(text("UPDATE history SET features = CAST(:doc AS json) WHERE sha = :sha"),
                         {"doc": '{"major_findings": ["GNG-CHG-001"], "action": "\\u0000"}', "sha": shas[0]})  # fmt: skip
        else:  # SQLite keeps JSON as text: a truncated document
            conn.execute(text("UPDATE history SET features = :doc WHERE sha = :sha"),
                         {"doc": '{"major_findings": ["GNG-CHG-001"', "sha": shas[0]})  # fmt: skip
    engine.dispose()
    with running_world(database_url, big_release()) as world:
        gate, summary = _decide(world)
    assert gate.answer is None and gate.waiting, summary[:3000]
    assert "the outcome record could not be read" in summary
    [record] = [r for r in _last_decision(database_url)["learning"] if r["rule_id"] == "GNG-CHG-001"]
    assert record["error"] and not record["relaxed"]


STRICT = "extends: strict\nenvironments:\n  production:\n    approve: {max_risk: 0.35}\n"
LEARN_ANYWAY = ("environments:\n  production:\n    approve: {max_risk: 0.9}\n"
                "    learning: {enabled: true, min_deployments: 5, min_approval: 0.5}\n")  # fmt: skip


def test_the_deployed_branch_cannot_turn_learning_on(database_url):
    """The default branch's strict pack keeps learning off; the branch being deployed turns it on: ignored."""
    state = release_state(extra_files=BIG_CHANGE, policy=STRICT, feature_branch_policy=LEARN_ANYWAY)
    relax_sha = state.repo(REPO).branches["relax"]
    state.named_deployments["relax"] = (REPO, state.add_deployment(REPO, relax_sha, "production", creator="dora",
                                                                  ref="relax").id)  # fmt: skip
    _seed(database_url, ["success"] * 20)
    with running_world(database_url, state) as world:
        gate, summary = _decide(world, "relax")
        reads = [c.query.get("ref") for c in world.state.calls("GET", ".github/gonogo.yml") if REPO in c.path]
    decision = _last_decision(database_url)
    assert reads and set(reads) == {None}  # the default branch as GitHub knows it, never the deployed one
    assert decision["learning"] == [] and not any(f.get("learned") for f in decision["findings"])
    assert gate.answer != "approved" and "Learned from this repository" not in summary


def test_a_success_the_deployer_posts_for_the_release_itself_does_not_shrink_the_change(database_url):
    """The deployer creates an ungated deployment of the release and marks it deployed fine: the change is still
    measured from the last release gonogo let through, so the large change is still found (and escalated)."""
    state = big_release()
    head = state.deployment(LABEL)[1].sha
    with running_world(database_url, state) as world:
        _post_status(world, head, "success")
        world.settle()
        time.sleep(1.1)  # the workflow that GitHub gates starts after the forged status (timestamps in seconds)
        world.state.named_deployments["late"] = (REPO, world.state.add_deployment(REPO, head, "production",
                                                                                  creator="dora").id)  # fmt: skip
        gate, summary = _decide(world, "late")
    assert gate.answer is None and gate.waiting, summary[:3000]
    [finding] = [f for f in _last_decision(database_url)["findings"] if f["rule_id"] == "GNG-CHG-001"]
    assert finding["status"] == "failed" and finding["value"] > 1000
