"""The decision: go / escalate / no-go, dry-run, waivers, invalid policy, strategy, explanations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rules.decide import decide, decide_invalid_policy
from rules.pipeline import evaluate
from rules.policy import PolicyError, default_policy, load_policy_text, parse_duration
from rules.samples import clean_evidence
from rules.types import Decision, Waiver
from scorer.assessment import Assessment, RiskEstimate
from scorer.evidence import PART_NAMES, Evidence

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)  # a Wednesday
FAILING_TESTS: dict[str, Any] = {
    "total": 240, "passed": 237, "failed": 3,
    "failures": [{"name": "test_pay", "classname": "tests.test_cart", "file": "tests/test_cart.py", "line": 40}],
}  # fmt: skip
CRITICAL = {"counts": {"critical": 1}, "findings": [{"source": "trivy", "rule_id": "CVE-2021-44228", "severity": "critical", "package": "log4j"}]}
REGRESSION = {"tool": "jmeter", "overall": {"name": "all", "samples": 5000, "p95_ms": 520, "p99_ms": 900, "error_rate": 0.001,
              "baseline_p95_ms": 400, "regression_pct": 30.0, "significant": True}}  # fmt: skip


def _decide(ev: Evidence, policy_text: str | None = None, now: datetime = NOW, **kw: Any) -> Decision:
    policy = load_policy_text(policy_text) if policy_text else default_policy()
    return evaluate(ev, policy, ev.environment, now, **kw)


def test_clean_deployment_goes() -> None:
    d = _decide(clean_evidence())
    assert (d.verdict, d.action) == ("go", "approve")
    assert d.blocking == [] and d.what_would_change == []
    assert d.readiness_score is not None and d.readiness_score >= 90
    assert 0.9 < d.confidence < 1.0  # everything but load tests was read
    assert d.risk.source == "rules" and d.risk.probability < 0.15
    assert d.strategy.name == "direct"


def test_failing_tests_are_no_go_with_the_fix_first() -> None:
    d = _decide(clean_evidence(tests=FAILING_TESTS))
    assert (d.verdict, d.action) == ("no-go", "reject")
    assert d.blocking == ["GNG-TEST-001"]
    assert d.recommendations[0].rule_id == "GNG-TEST-001" and "failing tests" in d.recommendations[0].remediation
    assert d.what_would_change[0].kind == "fix_findings" and d.what_would_change[0].rule_ids == ["GNG-TEST-001"]
    finding = d.blocking_findings[0]
    assert (finding.value, finding.threshold) == (3, 0) and finding.why and finding.remediation


def test_critical_vulnerability_is_no_go() -> None:
    d = _decide(clean_evidence(security=CRITICAL))
    assert d.verdict == "no-go" and d.blocking == ["GNG-SEC-001"]


def test_performance_regression_escalates_by_default_and_blocks_under_strict() -> None:
    ev = clean_evidence(performance=REGRESSION)
    d = _decide(ev)
    assert d.verdict == "escalate"
    assert any("GNG-PERF-002" in r for r in d.reasons)
    assert d.strategy.name == "canary" and any("p95" in w for w in d.strategy.watch)
    strict = _decide(ev, "extends: strict\n")
    assert strict.verdict == "no-go" and "GNG-PERF-002" in strict.blocking
    relaxed = _decide(ev, "environments:\n  production:\n    rules: {GNG-PERF-002: {threshold: 40}}\n")
    assert relaxed.verdict == "go"


def test_risk_above_reject_is_no_go_and_between_limits_escalates() -> None:
    high = RiskEstimate(probability=0.9, source="model", model_version="rf-2025-06-01")
    d = _decide(clean_evidence(), risk=high)
    assert d.verdict == "no-go" and d.blocking == [] and "reject.max_risk" in d.reasons[0]
    mid = _decide(clean_evidence(), risk=RiskEstimate(probability=0.3, source="model", model_version="v2"))
    assert mid.verdict == "escalate"
    risk_change = next(c for c in mid.what_would_change if c.kind == "risk")
    assert risk_change.gap == pytest.approx(0.15)


def _without(ev: Evidence, part: str, reason: str) -> Evidence:
    data = ev.model_dump()
    data[part].update(availability="unavailable", reason=reason)
    return Evidence.model_validate(data)


def test_missing_evidence_only_pushes_towards_escalation() -> None:
    for name in PART_NAMES:
        ev = _without(clean_evidence(), name, "HTTP 502")
        d = _decide(ev)
        assert d.verdict in ("go", "escalate"), name
        assert d.confidence <= 1.0
    # A no-go whose evidence disappears becomes an escalation, never a go.
    d = _decide(_without(clean_evidence(tests=FAILING_TESTS), "tests", "zip corrupt"))
    assert d.verdict == "escalate"
    assert any(c.kind == "evidence" and "GNG-TEST-001" in c.rule_ids for c in d.what_would_change)


def test_freeze_window_escalates_a_clean_deployment_but_not_a_no_go() -> None:
    policy = 'environments:\n  production:\n    freeze:\n      - {start: "FRI 16:00", end: "MON 08:00", timezone: "Europe/Berlin"}\n'
    saturday = datetime(2025, 6, 7, 10, 0, tzinfo=UTC)
    d = _decide(clean_evidence(), policy, now=saturday)
    assert d.verdict == "escalate" and d.freeze is not None and d.freeze.ends_at == datetime(2025, 6, 9, 6, 0, tzinfo=UTC)
    assert any(c.kind == "freeze" for c in d.what_would_change)
    assert _decide(clean_evidence(), policy, now=NOW).verdict == "go"
    assert _decide(clean_evidence(tests=FAILING_TESTS), policy, now=saturday).verdict == "no-go"


def test_dry_run_approves_and_records_what_it_would_have_done() -> None:
    d = _decide(clean_evidence(tests=FAILING_TESTS), "mode: dry-run\n")
    assert (d.verdict, d.action, d.mode) == ("no-go", "approve", "dry-run")
    assert d.reasons[0].startswith("dry-run mode: gonogo would have decided no-go")


def _waiver(**kw: Any) -> Waiver:
    base: dict[str, Any] = {"rule_id": "GNG-SEC-001", "environment": "production", "sha": None,
                            "expires_at": NOW + timedelta(days=30), "reason": "not reachable: JNDI disabled",
                            "author": "alice"}  # fmt: skip
    return Waiver(**{**base, **kw})


def test_active_waiver_turns_no_go_into_go_and_is_listed() -> None:
    ev = clean_evidence(security=CRITICAL)
    d = _decide(ev, waivers=[_waiver()])
    assert d.verdict == "go" and d.blocking == []
    waived = next(f for f in d.findings if f.rule_id == "GNG-SEC-001")
    assert waived.status == "waived" and waived.waiver is not None and waived.waiver.author == "alice"
    assert [w.rule_id for w in d.waivers] == ["GNG-SEC-001"]
    assert d.dimensions["security"].waived == 1


@pytest.mark.parametrize("granted_days_ago, cap, counts", [
    (2, "1d", False),  # older than the cap in force now: over, though its own end is 28 days away
    (2, "3d", True),
    (None, "1d", True),  # no grant time known: only its own end bounds it
    (31, "8w", True),  # older than the default 30 days: a longer cap lets it count, up to its own end
])  # fmt: skip
def test_the_max_lifetime_in_force_bounds_every_waiver_from_its_grant(granted_days_ago, cap, counts) -> None:
    granted = None if granted_days_ago is None else NOW - timedelta(days=granted_days_ago)
    waiver = _waiver(expires_at=NOW + timedelta(days=28), granted_at=granted)
    d = _decide(clean_evidence(security=CRITICAL), f"environments:\n  production:\n    waivers: {{max_lifetime: {cap}}}\n",
                waivers=[waiver])  # fmt: skip
    assert (d.verdict == "go") is counts
    if counts:
        [applied] = d.waivers
        assert applied.counts_until == waiver.ends_at(parse_duration(cap))
        assert d.lapsed_waivers == []
    else:
        assert d.waivers == [] and [w.rule_id for w in d.lapsed_waivers] == ["GNG-SEC-001"]
        assert d.lapsed_waivers[0].counts_until == granted + timedelta(days=1)  # type: ignore[operator]
        assert any("expired under the current max_lifetime (1d" in r for r in d.reasons)


def test_a_waiver_cut_short_by_the_cap_shows_its_earlier_end() -> None:
    from rules.report import check_run_markdown

    waiver = _waiver(expires_at=NOW + timedelta(days=28), granted_at=NOW - timedelta(hours=2))
    d = _decide(clean_evidence(security=CRITICAL), "environments:\n  production:\n    waivers: {max_lifetime: 1d}\n",
                waivers=[waiver])  # fmt: skip
    assert d.verdict == "go" and d.waivers[0].counts_until == NOW + timedelta(hours=22)
    shown = "until 2025-06-05 08:00 UTC (its own end, 2025-07-02, is past the current max_lifetime)"
    assert shown in check_run_markdown(d)


@pytest.mark.parametrize("waiver", [
    _waiver(expires_at=NOW - timedelta(seconds=1)),
    _waiver(expires_at=NOW - timedelta(seconds=1), granted_at=NOW - timedelta(days=1)),  # the cap never extends it
    _waiver(environment="staging"),
    _waiver(sha="f" * 40),
    _waiver(rule_id="GNG-SEC-002"),
])  # fmt: skip
def test_waiver_that_does_not_match_does_not_apply(waiver: Waiver) -> None:
    d = _decide(clean_evidence(security=CRITICAL), waivers=[waiver])
    assert d.verdict == "no-go" and d.waivers == []


def test_naive_waiver_expiry_is_utc() -> None:
    assert _waiver(expires_at=datetime(2026, 12, 31)).expires_at.tzinfo is UTC


def test_invalid_policy_escalates_with_the_errors_and_never_approves() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text("mode: yolo\n")
    ev = clean_evidence()
    d = evaluate(ev, info.value, "production", NOW)
    assert (d.verdict, d.action) == ("escalate", "escalate")
    assert d.policy_errors and ":1:7:" in d.policy_errors[0]
    assert d.what_would_change[0].kind == "policy"
    # Even with a failing blocker, humans decide; nothing is approved automatically.
    d2 = decide_invalid_policy(["bad"], Assessment(evidence=clean_evidence(tests=FAILING_TESTS)))
    assert d2.action == "escalate" and d2.policy_errors == ["bad"]


def test_strategy_choice_from_evidence_and_override() -> None:
    migration = clean_evidence(change={"has_migration": True})
    assert _decide(migration).strategy.name == "blue-green"
    big = clean_evidence(change={"additions": 2500, "deletions": 300, "subsystems": 7})
    assert _decide(big).strategy.name == "feature-flag"
    forced = _decide(clean_evidence(), "environments:\n  production:\n    strategy: canary\n")
    assert forced.strategy.name == "canary" and forced.strategy.overridden and forced.strategy.steps


def test_large_change_escalates_with_smallest_fix_set() -> None:
    d = _decide(clean_evidence(change={"additions": 2500, "deletions": 300}))
    assert d.verdict == "escalate"
    fix = next(c for c in d.what_would_change if c.kind == "fix_findings")
    assert fix.rule_ids == ["GNG-CHG-001"]


def test_low_score_names_the_smallest_set_of_findings_to_fix() -> None:
    policy = "environments:\n  production:\n    approve: {min_score: 99}\n"
    ev = clean_evidence(tests={"flaky": [{"name": "t1", "outcome": "flaky"}]}, change={"hotspots": ["a", "b", "c", "d"]})
    d = _decide(ev, policy)
    assert d.verdict == "escalate"
    score = next(c for c in d.what_would_change if c.kind == "score")
    assert set(score.rule_ids) <= {"GNG-TEST-003", "GNG-CHG-007"} and score.rule_ids


def test_required_checks_from_the_policy() -> None:
    policy = "environments:\n  production:\n    required_checks: [build, e2e]\n"
    d = _decide(clean_evidence(), policy)
    assert d.verdict == "escalate"  # e2e never reported: unknown blocker
    assert any(c.kind == "evidence" and c.rule_ids == ["GNG-QUAL-002"] for c in d.what_would_change)
    checks = {"checks": [{"name": "build", "status": "completed", "conclusion": "success"},
                         {"name": "e2e", "status": "completed", "conclusion": "failure"}]}  # fmt: skip
    assert _decide(clean_evidence(checks=checks), policy).blocking == ["GNG-QUAL-001", "GNG-QUAL-002"]


def test_rules_turned_off_are_skipped() -> None:
    d = _decide(clean_evidence(security=CRITICAL), "environments:\n  '*':\n    rules: {GNG-SEC-001: off}\n")
    assert d.verdict == "go"
    assert next(f for f in d.findings if f.rule_id == "GNG-SEC-001").message == "turned off by the policy"


def test_reviewers_come_from_the_policy() -> None:
    policy = "environments:\n  production:\n    reviewers: {users: [alice], teams: [sre], four_eyes: false}\n"
    d = _decide(clean_evidence(), policy)
    assert d.reviewers.users == ["alice"] and d.reviewers.teams == ["sre"] and d.reviewers.four_eyes is False


def test_decision_round_trips_through_json() -> None:
    d = _decide(clean_evidence(tests=FAILING_TESTS, performance=REGRESSION), waivers=[_waiver(rule_id="GNG-TEST-001")])
    assert Decision.from_json(d.to_json()) == d
    summary = d.summary_dict()
    assert {"decision", "readiness_score", "risk", "confidence", "dimensions", "findings", "blocking",
            "recommendations", "strategy", "evidence"} <= set(summary)  # fmt: skip
    assert set(summary["findings"][0]) >= {"rule_id", "dimension", "severity", "status", "value", "threshold", "message", "remediation"}


def test_decide_is_deterministic_and_pure() -> None:
    ev = clean_evidence(performance=REGRESSION)
    a = decide(default_policy(), Assessment(evidence=ev), "production", NOW)
    b = decide(default_policy(), Assessment(evidence=ev), "production", NOW)
    assert a == b and ev == clean_evidence(performance=REGRESSION)


def test_heuristic_risk_drivers_explain_the_estimate() -> None:
    d = _decide(clean_evidence(tests=FAILING_TESTS, change={"has_migration": True}))
    features = [dr.feature for dr in d.risk.drivers]
    assert features[0] == "tests_failed" and "has_migration" in features
    assert all(dr.text.endswith(f"{dr.contribution:+.2f}") for dr in d.risk.drivers)
