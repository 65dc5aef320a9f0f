"""The gate-quality benchmark's replay counts what it says it counts (a few repositories, two months)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "gate_quality", Path(__file__).resolve().parents[1] / "benchmarks" / "gate_quality.py"
)
assert _spec is not None and _spec.loader is not None
gate_quality = importlib.util.module_from_spec(_spec)
sys.modules["gate_quality"] = gate_quality  # dataclasses look their module up by name
_spec.loader.exec_module(gate_quality)


def test_a_small_fleet_replays_through_the_decision_and_retrains() -> None:
    result = gate_quality.run(repos=6, months=2, seed=3, model_params={"min_samples_boosting": 10**9})
    months = result["per_month"]
    assert [m["month"] for m in months] == [1, 2]
    assert sum(m["deployments"] for m in months) == result["deployments"] > 0
    for m in months:
        v = m["verdicts"]
        assert sum(v.values()) == m["deployments"]
        assert round(m["auto_share"] * m["deployments"]) == v["go"] + v["no-go"]
        assert m["escaped"] <= v["go"] and m["escaped"] <= m["failures"]
        assert m["false_blocks"] <= v["escalate"] + v["no-go"]
        assert m["learned"] <= v["go"] + v["escalate"] + v["no-go"]
    assert result["timings"]["train_s"] > 0  # a model was trained on month 1's outcomes for month 2
    assert result["models_promoted"] == "1 of 1"  # the registry activates the first model of its scope
    # the learning curve decides the last month's deployments again, once per month of knowledge
    curve = result["learning_curve"]
    assert [c["knowledge_of_month"] for c in curve] == [1, 2]
    assert all(c["deployments"] == months[-1]["deployments"] for c in curve)
    # with the last month's own knowledge it decides as it did live (the record then grows within the month only)
    assert months[-1]["learned"] == curve[-1]["learned"] == 0
    assert curve[-1]["escaped"] == months[-1]["escaped"] and curve[-1]["false_blocks"] == months[-1]["false_blocks"]
    svg = gate_quality.svg(result)
    assert svg.startswith("<svg") and svg.count("<polyline") == 7  # with the best possible gate's false blocks
    assert set(gate_quality.summary(result)["targets"]) == {
        "auto_share_after_month_1 >= 0.8", "escaped <= half of naive", "false-block rate lower at the end than in month 1",
        "fixed traffic: false-block rate never rises as knowledge grows"}


def test_the_replay_keeps_the_outcome_record_the_app_keeps() -> None:
    """Every decided deployment joins its repository's record: its majors, verdict, answer and outcome."""
    rng = gate_quality.np.random.default_rng(5)
    fleet = gate_quality.make_fleet(3, rng)
    week = gate_quality.schedule(fleet, 1, rng)[:40]
    stats, history = gate_quality.Month(), []
    gate_quality._replay(week, gate_quality.default_policy(), {}, history, stats, {"decide_s": 0.0})
    past = [p for repo in fleet for _, p in repo.past]
    assert len(past) == len(week) == len(history)
    for p in past:
        assert (p.outcome is None) == (p.answer == "rejected")  # only what ships reports an outcome
        assert p.asked or p.answer == "rejected" or p.outcome is not None  # gonogo approved what it did not ask about
    assert any(p.majors for p in past)


def test_the_best_possible_gate_approves_by_true_risk_within_the_budget_and_keeps_the_floor() -> None:
    """The oracle bound: one threshold on the true risk, half the naive gate's escapes, gonogo's floor untouched."""
    rng = gate_quality.np.random.default_rng(1)  # a fleet with unread evidence and open high findings
    fleet = gate_quality.make_fleet(8, rng)
    deployments = gate_quality.schedule(fleet, 3, rng)
    stats, history = gate_quality.Month(), []
    gate_quality._replay(deployments, gate_quality.default_policy(), {}, history, stats, {"decide_s": 0.0})
    assert stats.naive_escaped > 0 and any(d.unread for d in deployments) and any(d.vulnerable for d in deployments)
    bound = gate_quality.oracle_bound(deployments, stats.naive_escaped, vulnerabilities=False)
    assert bound["budget"] == stats.naive_escaped // 2
    assert bound["escaped"] <= bound["budget"]
    # the floor: what gonogo rejected stays rejected, what it escalated for unread evidence is never approved
    floor = {id(d) for d in deployments if d.verdict == "no-go" or d.unread}
    free = sorted((d for d in deployments if id(d) not in floor), key=lambda d: d.p_fail)
    approved = [d for d in free if d.p_fail < bound["threshold"]]
    assert approved and len(approved) < len(free)
    assert sum(d.would_fail for d in approved) == bound["escaped"]
    # the longest prefix by true risk: one more deployment would overrun the budget (or there is none left)
    rest = free[len(approved):]
    assert not rest or bound["escaped"] + rest[0].would_fail > bound["budget"]
    months = {}
    for d in deployments:
        months.setdefault(gate_quality._month_of(d.created_at), []).append(d)
    go = {id(d) for d in approved}
    rates = [sum(not d.would_fail for d in ds if id(d) not in go) / len(ds) for _, ds in sorted(months.items())]
    assert bound["false_block_rates"] == [round(r, 4) for r in rates]
    after = [d for k, ds in months.items() if k > 0 for d in ds]
    auto = sum(id(d) in go or d.verdict == "no-go" for d in after) / len(after)
    assert bound["auto_share_after_month_1"] == round(auto, 4)
    # holding open high findings back too can only leave fewer deployments to decide alone
    stricter = gate_quality.oracle_bound(deployments, stats.naive_escaped, vulnerabilities=True)
    assert stricter["held_by_floor_after_month_1"] > bound["held_by_floor_after_month_1"]
    assert stricter["escaped"] <= stricter["budget"]


def test_what_a_repository_does_not_measure_still_happens_but_the_gate_does_not_see_it() -> None:
    """A repository without scanning, load tests or coverage still ships vulnerabilities, regressions and thin tests.

    Were they absent, a blind repository would look safer than a measured one, and missing evidence would cost
    the naive gate nothing.
    """
    rng = gate_quality.np.random.default_rng(11)
    blind, seen = gate_quality.make_fleet(2, rng)
    blind.scanning = blind.load_tests = blind.coverage = False
    seen.scanning = seen.load_tests = seen.coverage = True
    blind.coverage_mean = seen.coverage_mean = 0.5  # under the 60 % line either way
    made = [gate_quality._deployment(repo, i, gate_quality.START, rng) for repo in (blind, seen) for i in range(400)]
    for repo in (blind, seen):
        facts = [d.facts for d in made if d.repo is repo]
        assert sum(f["high"] + f["critical"] for f in facts) > 0
        assert any(f["regressed"] for f in facts) and any(f["load_errors"] for f in facts)
        assert all(f["coverage"] is not None for f in facts)
    # and they weigh in the truth of the blind repository too: a regression it cannot see still raises its risk
    blind_made = [d for d in made if d.repo is blind]
    regressed = [d.p_fail for d in blind_made if d.facts["regressed"]]
    steady = [d.p_fail for d in blind_made if not d.facts["regressed"]]
    assert sum(regressed) / len(regressed) > 1.5 * sum(steady) / len(steady)
    # the gate sees a fact only where the repository measures it
    twin = next(d for d in made if d.repo is blind and d.facts["regressed"])
    twin_seen = gate_quality.Deployment(seen, twin.index, twin.created_at, dict(twin.facts), 0.0, False)
    evidence_blind = gate_quality.evidence_of(twin)
    evidence_seen = gate_quality.evidence_of(twin_seen)
    assert evidence_blind.security.availability == evidence_blind.performance.availability == "not_configured"
    assert evidence_blind.coverage.availability == "not_configured"
    assert evidence_seen.performance.availability == "ok" and evidence_seen.performance.overall is not None
    assert evidence_seen.performance.overall.significant
    assert evidence_seen.coverage.line_rate == twin.facts["coverage"]


def test_a_stricter_line_is_set_as_a_repository_policy_would_and_approves_no_more() -> None:
    """``--max-risk`` changes production's approve.max_risk and nothing else; a lower line never approves more."""
    default = gate_quality.effective(gate_quality.default_policy(), "production")
    strict = gate_quality.effective(gate_quality.policy_for(0.05), "production")
    assert default.approve.max_risk == 0.15 and strict.approve.max_risk == 0.05
    assert strict.model_dump(exclude={"approve"}) == default.model_dump(exclude={"approve"})
    assert strict.approve.min_score == default.approve.min_score
    try:
        gate_quality.policy_for(0.9)  # above reject.max_risk: refused as a policy file would be
    except gate_quality.PolicyError as exc:
        assert "reject.max_risk" in str(exc)
    else:
        raise AssertionError("an approve line above the reject line was accepted")
    go = {}
    for line in (None, 0.05):
        rng = gate_quality.np.random.default_rng(4)
        deployments = gate_quality.schedule(gate_quality.make_fleet(6, rng), 2, rng)
        stats = gate_quality.Month()
        gate_quality._replay(deployments, gate_quality.policy_for(line), {}, [], stats, {"decide_s": 0.0})
        go[line] = stats.verdicts["go"]
    assert 0 < go[0.05] < go[None]
