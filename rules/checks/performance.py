"""Performance rules: latency, regressions against the baseline, error rate."""

from __future__ import annotations

from rules.rule import Check, Rule, at_least, at_most, passed, skipped, unknown
from rules.severity import RuleSeverity
from rules.types import RuleResult
from scorer.assessment import Assessment
from scorer.evidence import Transaction


def _overall(a: Assessment) -> Transaction | None:
    return a.evidence.performance.overall


def _not_reported(figure: str, limit: float | None) -> RuleResult:
    # the load test ran and its report leaves the figure out (k6's summaryTrendStats, no failed-requests metric):
    # the rule applies and its evidence is missing, so it is unknown, never skipped as if it did not apply
    return unknown(f"the load-test results do not report {figure}", limit)


def _p95(a: Assessment, limit: float | None) -> RuleResult:
    o = _overall(a)
    if o is None:
        return unknown("performance results have no overall figures", limit)
    if o.p95_ms is None:
        return _not_reported("the p95 latency", limit)
    return at_most(o.p95_ms, limit, "p95 latency", "ms")


def _p95_regression(a: Assessment, limit: float | None) -> RuleResult:
    o = _overall(a)
    if o is None:
        return unknown("performance results have no overall figures", limit)
    if o.regression_pct is None and o.p95_ms is None:
        return _not_reported("the p95 latency", limit)
    if o.regression_pct is None:
        return skipped("no performance baseline to compare with", limit)
    if o.significant is False and limit is not None and o.regression_pct > limit:
        return passed(
            f"p95 changed by {o.regression_pct:.1f}% but the test found it within noise", o.regression_pct, limit
        )
    return at_most(round(o.regression_pct, 2), limit, "p95 latency regression", "%")


def _error_rate(a: Assessment, limit: float | None) -> RuleResult:
    o = _overall(a)
    if o is None:
        return unknown("performance results have no overall figures", limit)
    if o.error_rate is None:
        return _not_reported("the error rate", limit)
    return at_most(round(o.error_rate * 100, 3), limit, "error rate under load", "%")


def _worst_transaction(a: Assessment, limit: float | None) -> RuleResult:
    txs = [t for t in a.evidence.performance.transactions if t.regression_pct is not None and t.significant is not False]
    if not txs:
        return skipped("no transaction has a baseline", limit)
    worst = max(txs, key=lambda t: t.regression_pct or 0.0)
    over = [f"{t.name}: +{t.regression_pct:.1f}%" for t in txs if limit is not None and (t.regression_pct or 0) > limit]
    result = at_most(round(worst.regression_pct or 0.0, 2), limit, f"worst transaction regression ({worst.name})", "%")
    result.details = over[:10]
    return result


def _p99(a: Assessment, limit: float | None) -> RuleResult:
    o = _overall(a)
    if o is None:
        return unknown("performance results have no overall figures", limit)
    return at_most(o.p99_ms, limit, "p99 latency", "ms")


def _samples(a: Assessment, limit: float | None) -> RuleResult:
    o = _overall(a)
    if o is None:
        return unknown("performance results have no overall figures", limit)
    return at_least(o.samples, limit, "load-test samples")


def _rule(
    id_: str, title: str, severity: RuleSeverity, threshold: float, unit: str, why: str, fix: str, check: Check
) -> Rule:
    return Rule(
        id=id_, dimension="performance", title=title, severity=severity, why=why, fix=fix,
        check=check, parts=("performance",), threshold=threshold, unit=unit, skip_when_not_configured=True,
    )  # fmt: skip


RULES: list[Rule] = [
    _rule(
        "GNG-PERF-001", "Ensure p95 latency stays under the limit", "major", 1000, "ms",
        "Slow responses at the 95th percentile are what one user in twenty experiences.",
        "Profile the slowest transactions in the load test; fix the hot path or raise the limit deliberately.",
        _p95,
    ),
    _rule(
        "GNG-PERF-002", "Ensure p95 latency does not regress", "major", 10, "%",
        "A latency regression against the last good deployment is the earliest sign of a capacity problem.",
        "Compare the slow transactions with the baseline run, find the change that slowed them, and fix it; "
        "or roll out behind a canary and watch p95.",
        _p95_regression,
    ),
    _rule(
        "GNG-PERF-003", "Ensure the error rate under load stays low", "major", 1, "%",
        "Errors under load become errors for users at peak traffic.",
        "Inspect the failing samples of the load test (status codes, timeouts) and fix their cause.",
        _error_rate,
    ),
    _rule(
        "GNG-PERF-004", "Ensure no transaction regresses sharply", "minor", 25, "%",
        "One endpoint can regress badly while the overall figure hides it.",
        "Look at the transactions listed here; profile and fix the regressed ones.",
        _worst_transaction,
    ),
    _rule(
        "GNG-PERF-005", "Ensure p99 latency stays under the limit", "minor", 2500, "ms",
        "Tail latency drives timeouts and retries in callers.",
        "Find the outliers (GC pauses, lock contention, cold caches) in the slowest samples.",
        _p99,
    ),
    _rule(
        "GNG-PERF-006", "Ensure the load test has enough samples", "minor", 100, "",
        "A handful of samples cannot show a regression or rule one out.",
        "Run the load test longer or with more users so each transaction gets enough samples.",
        _samples,
    ),
]
