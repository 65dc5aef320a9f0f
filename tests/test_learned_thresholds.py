"""Thresholds that learn from outcomes, through the app: a large change stops escalating where big changes succeed.

The repository's earlier production deployments are seeded as the app stores them (a deployment row with its
answer, a history row with the decision's major findings, verdict and outcome); the release under test then goes
through the real gate over HTTP, and its own history row must carry what the next decision will count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from github_app import audit, db
from github_app.db.models import AuditEntry, DecisionRecord, Deployment, HistoryRow, Review
from rules.learning import PastDeployment, TrackRecord, judge, tally, wilson_upper
from rules.policy import PolicyError, default_policy, effective, load_policy_text
from tests.scenarios import LABEL, REPO, release_state
from tests.world import running_world

BIG_CHANGE = [{"filename": "api/billing.py", "additions": 930, "deletions": 20}]  # 1,037 lines in all
# The cold-start prior puts a change of a thousand lines near 28 %: a team that tolerates that much risk
# still sees every large change escalated by GNG-CHG-001 until its outcomes vouch for it.
POLICY = "environments:\n  production:\n    approve: {max_risk: 0.35}\n"


def big_release():
    return in_working_hours(release_state(extra_files=BIG_CHANGE, policy=POLICY))


def in_working_hours(state):
    """Date the repository's deployments at the latest weekday noon (UTC), in the order they were made.

    The cold-start prior weighs off-hours and weekend releases as riskier (a release at 19:00 UTC or later
    came out at 35 % against POLICY's 35 % limit), so a release stamped at the wall clock's hour decided
    differently at night. These tests are about the outcome record, not the time of day.
    """
    now = datetime.fromtimestamp(state.now(), UTC)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon > now:
        noon -= timedelta(days=1)
    while noon.weekday() >= 5:
        noon -= timedelta(days=1)
    deployments = sorted(state.repo(REPO).deployments.values(), key=lambda d: (d.created_at, d.id))
    runs = state.repo(REPO).workflow_runs
    for k, dep in enumerate(deployments):
        dep.created_at = noon.timestamp() - (len(deployments) - 1 - k)  # a second apart, the newest at noon
        run = runs.get(dep.run_id)
        if run is not None and run.created_at > dep.created_at:  # its run started before it, as on GitHub
            run.created_at = dep.created_at - 60
    return state


def _seed(
    database_url: str, outcomes: list[str | None], *, answer: str | None = "approved", rule: str = "GNG-CHG-001",
    repository: str = REPO, environment: str = "production", shas: list[str] | None = None,
    approver: str | None = "rita", step: timedelta = timedelta(days=1), approver_id: int | None = None,
    creator_id: int | None = None,
) -> list[str]:
    """Earlier escalated deployments of the repository (``rule`` failed as a major in each); their shas.

    An approval is stored as the app stores a reviewer's: the answer on the deployment row and an allowed
    ``approve`` review by ``approver`` (the deployer is dora).
    """
    engine = db.make_engine(database_url)
    start = datetime.now(UTC) - timedelta(days=31)
    shas = shas or [f"{i:040x}" for i in range(len(outcomes))]
    with engine.begin() as conn:
        for i, (outcome, sha) in enumerate(zip(outcomes, shas, strict=True)):
            key, when = f"{repository}#{9000 + i}/{environment}/{90000 + i}", start + step * i
            dep_id = conn.execute(insert(Deployment).values(
                key=key, repository=repository, environment=environment, sha=sha, run_id=9000 + i, created_at=when,
                creator="dora", creator_id=creator_id, state="done" if answer else "escalated", answer=answer,
                answered_at=when if answer else None,
            ).returning(Deployment.id)).scalar_one()  # fmt: skip
            if answer == "approved" and approver:
                conn.execute(insert(Review).values(deployment_id=dep_id, delivery_id=f"seed-{i}", actor=approver,
                                                   actor_id=approver_id, action="approve", allowed=True, reason="",
                                                   created_at=when))  # fmt: skip
            conn.execute(insert(HistoryRow).values(
                deployment_id=key, repository=repository, environment=environment, sha=sha, created_at=when,
                outcome=outcome if answer == "approved" else None, outcome_at=when + timedelta(hours=1),
                features={"additions": 1100, "major_findings": [rule], "verdict": "escalate", "action": "escalate"},
            ))  # fmt: skip
    engine.dispose()
    return shas


def _stored(database_url: str) -> tuple[dict, dict]:
    """The decision as stored, checked against its audit entry, and the history row it added."""
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        key = conn.execute(select(Deployment.key).where(Deployment.run_id < 9000)).scalar_one()
        decision = conn.execute(select(DecisionRecord.data).order_by(DecisionRecord.id.desc()).limit(1)).scalar_one()
        features = conn.execute(select(HistoryRow.features).where(HistoryRow.deployment_id == key)).scalar_one()
        audited = conn.execute(select(AuditEntry.data).where(AuditEntry.kind == "decision",
                                                             AuditEntry.deployment_key == key)).scalar_one()  # fmt: skip
    assert audit.verify(engine).ok
    engine.dispose()
    assert audited["decision"]["learning"] == decision["learning"]  # the audit trail shows what was learned
    assert audited["decision"]["findings"] == decision["findings"]
    return decision, features


def test_a_large_change_escalates_without_a_record(database_url):
    with running_world(database_url, big_release()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
        assert gate.answer is None and gate.waiting, summary[:2000]
        assert "GNG-CHG-001" in summary and "Learned from this repository" not in summary
    decision, features = _stored(database_url)
    # what the next decision will count: the major that escalated, and the verdict
    assert features["major_findings"] == ["GNG-CHG-001"] and features["verdict"] == features["action"] == "escalate"
    assert decision["verdict"] == "escalate"


def test_a_large_change_is_approved_where_large_changes_were_approved_and_succeeded(database_url):
    _seed(database_url, ["success"] * 20)
    with running_world(database_url, big_release()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        run = world.check_run(LABEL)
        summary = run.output["summary"]
        assert gate.answer == "approved", summary[:3000]
        assert run.conclusion == "success"
        assert "Learned from this repository's outcomes" in summary
        assert "GNG-CHG-001: a recommendation here" in summary and "20 of 20 earlier deployments" in summary
    decision, features = _stored(database_url)
    [finding] = [f for f in decision["findings"] if f["rule_id"] == "GNG-CHG-001"]
    assert finding["status"] == "failed" and finding["severity"] == "minor" and finding["learned"] is True
    [record] = [r for r in decision["learning"] if r["rule_id"] == "GNG-CHG-001"]
    assert record["relaxed"] and record["deployed"] == 20 and record["failed"] == 0 and record["failure_bound"] <= 0.35
    assert any("GNG-CHG-001" in r and "not a reason to escalate" in r for r in decision["reasons"])
    # still counted as a large change, so that failures can withdraw the relaxation
    assert features["major_findings"] == ["GNG-CHG-001"] and features["verdict"] == "go"
    assert features["action"] == "approve"


@pytest.mark.parametrize(
    ("outcomes", "answer", "why"),
    [
        (["success"] * 15 + ["failure"] * 5, "approved", "above approve.max_risk"),  # they fail too often
        (["success"] * 12, "approved", "12 of the 20 outcomes needed"),  # too few yet
        (["success"] * 25, "rejected", "reviewers approved 0 of 25"),  # reviewers keep saying no
    ],
)
def test_a_record_that_does_not_vouch_keeps_escalating(database_url, outcomes, answer, why):
    _seed(database_url, outcomes, answer=answer)
    with running_world(database_url, big_release()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
        assert gate.answer is None and gate.waiting, summary[:3000]
        assert "GNG-CHG-001: still escalates" in summary and why in summary


def test_a_security_rule_record_relaxes_nothing(database_url):
    _seed(database_url, ["success"] * 30, rule="GNG-SEC-002")  # never counted: security is not learnable
    with running_world(database_url, big_release()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        assert gate.answer is None and gate.waiting


def test_the_policy_bounds_what_can_be_learned():
    env = effective(default_policy(), "production")
    assert env.learning.enabled and env.learning.rules == ["GNG-CHG-001", "GNG-TEST-002"]
    assert env.learning.min_deployments == 20
    with pytest.raises(PolicyError, match="GNG-SEC-002 cannot be learned"):
        load_policy_text("environments:\n  production:\n    learning: {rules: [GNG-SEC-002]}\n")
    with pytest.raises(PolicyError, match="min_deployments"):
        load_policy_text("environments:\n  production:\n    learning: {min_deployments: 2}\n")
    with pytest.raises(PolicyError, match="at most 365d"):  # a record from years ago says little of today's code
        load_policy_text("environments:\n  production:\n    learning: {window: 3650d}\n")
    off = effective(load_policy_text("environments:\n  production:\n    learning: {enabled: false}\n"), "production")
    records = tally([PastDeployment(("GNG-CHG-001",), True, "approved", "success")] * 40, off.learning.rules)
    assert not judge(off, records)["GNG-CHG-001"].relaxed
    assert judge(env, records)["GNG-CHG-001"].relaxed
    assert not judge(env, {"GNG-CHG-001": TrackRecord(rule_id="GNG-CHG-001")})["GNG-CHG-001"].relaxed
    untested = tally([PastDeployment(("GNG-TEST-002",), True, "approved", "success")] * 40, env.learning.rules)
    assert judge(env, untested)["GNG-TEST-002"].relaxed
    insists = effective(load_policy_text("environments:\n  production:\n    tests: {require_reports: true}\n"),
                        "production")  # fmt: skip
    assert "require_reports" in judge(insists, untested)["GNG-TEST-002"].why
    assert not judge(insists, untested)["GNG-TEST-002"].relaxed
    strict = effective(load_policy_text("extends: strict\n"), "production")
    assert not strict.learning.enabled and not judge(strict, records)["GNG-CHG-001"].relaxed


def test_the_failure_bound_is_a_one_sided_95_percent_wilson_bound():
    assert wilson_upper(0, 0) == 1.0
    assert 0.11 < wilson_upper(0, 20) < 0.12  # 20 successes in a row: the rate may still be up to 12 %
    assert wilson_upper(3, 20) > 0.3 > wilson_upper(3, 200)


def test_only_reviewers_answers_count_as_approvals():
    """A dry run approves what it would have escalated: its deployments count as outcomes, not as approvals."""
    env = effective(default_policy(), "production")
    dry_run = [PastDeployment(("GNG-CHG-001",), False, "approved", "success")] * 20
    refused = [PastDeployment(("GNG-CHG-001",), True, "rejected", None)] * 5
    record = judge(env, tally(dry_run + refused, ["GNG-CHG-001"]))["GNG-CHG-001"]
    assert (record.deployed, record.reviewed, record.approved) == (20, 5, 0)
    assert not record.relaxed and "reviewers approved 0 of 5" in record.why
    record = judge(env, tally(dry_run, ["GNG-CHG-001"]))["GNG-CHG-001"]
    assert record.relaxed  # twenty large changes shipped and none failed: the outcomes alone vouch


def test_one_commit_or_one_day_is_one_observation():
    """Deployments that share a commit or a day are one group: any failure fails it, any rejection counts against."""
    from datetime import date

    def row(sha: str, day: int, answer: str = "approved", outcome: str | None = "success") -> PastDeployment:
        return PastDeployment(("GNG-CHG-001",), True, answer, outcome, sha, date(2026, 3, day))

    rec = tally([row("a", 1), row("a", 2), row("b", 2), row("c", 3, outcome="failure"), row("c", 4),
                 row("d", 5, "unvouched"), row("e", 6), row("f", 6, "rejected", None)], ["GNG-CHG-001"])["GNG-CHG-001"]
    # groups: {a@1, a@2, b@2}, {c@3, c@4}, {d@5}, {e@6, f@6}
    assert (rec.flagged, rec.reviewed, rec.approved, rec.deployed, rec.failed) == (4, 4, 2, 4, 1)
