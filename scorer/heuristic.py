"""A transparent rule-based risk estimate, used whenever no trained risk model is available.

Each driver adds a fixed, documented amount of log-odds to a base rate; the probability is the
logistic of the sum. Only evidence that was actually read contributes, so missing evidence never
raises the estimate (it lowers confidence instead, elsewhere).
"""

from __future__ import annotations

import math

from scorer.assessment import Driver, RiskEstimate
from scorer.evidence import Evidence

BASE_RATE = 0.08  # share of failed deployments commonly reported for teams without a gate


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _driver(feature: str, value: float | str | bool | None, contribution: float, text: str) -> Driver:
    c = round(contribution, 3)
    return Driver(feature=feature, value=value, contribution=c, text=f"{text}: {c:+.2f}")


def _tests(ev: Evidence) -> list[Driver]:
    t = ev.tests
    if not t.has_data:  # failures read from an incomplete part are a lower bound: they still add risk
        return []
    out = []
    bad = t.failed + t.errored
    if bad:
        out.append(_driver("tests_failed", bad, min(2.0, 1.2 + 0.2 * math.log2(1 + bad)), f"{bad} failing tests"))
    if t.flaky:
        first = t.flaky[0]
        seen = f" ({first.name}: {first.where})" if first.where else ""
        out.append(_driver("flaky_tests", len(t.flaky), 0.3, f"{len(t.flaky)} flaky tests{seen}"))
    return out


def _checks(ev: Evidence) -> list[Driver]:
    c = ev.checks
    if not c.ok:
        return []
    out = []
    failed = list(c.failed)
    if failed:
        out.append(_driver("checks_failed", len(failed), 1.0, f"{len(failed)} failed checks"))
    pending = list(c.pending)
    if pending:
        out.append(_driver("checks_pending", len(pending), 0.3, f"{len(pending)} checks still running"))
    return out


def _coverage(ev: Evidence) -> list[Driver]:
    co = ev.coverage
    if not co.ok or co.line_rate is None:
        return []
    out = []
    if co.line_rate < 0.5:
        out.append(_driver("coverage", co.line_rate, 0.4, f"line coverage {co.line_rate:.0%} (under 50%)"))
    elif co.line_rate < 0.7:
        out.append(_driver("coverage", co.line_rate, 0.2, f"line coverage {co.line_rate:.0%} (under 70%)"))
    delta = co.delta
    if delta is not None and delta < -0.02:
        out.append(_driver("coverage_delta", delta, 0.2, f"coverage dropped {-delta * 100:.1f} points"))
    return out


def _security(ev: Evidence) -> list[Driver]:
    s = ev.security
    if not s.has_data:  # findings read from an incomplete part are a lower bound: they still add risk
        return []
    out = []
    if s.count("critical"):
        out.append(_driver("vulns_critical", s.count("critical"), 0.8, f"{s.count('critical')} critical vulnerabilities"))
    if s.count("high"):
        out.append(_driver("vulns_high", s.count("high"), 0.3, f"{s.count('high')} high-severity vulnerabilities"))
    if s.secrets_open:
        out.append(_driver("secrets_open", s.secrets_open, 0.6, f"{s.secrets_open} open secret alerts"))
    return out


def _performance(ev: Evidence) -> list[Driver]:
    p = ev.performance
    if not p.ok or p.overall is None:
        return []
    o, out = p.overall, []
    reg = o.regression_pct
    if reg is not None and reg > 10 and o.significant is not False:
        out.append(_driver("p95_regression_pct", reg, 0.3 + 0.02 * min(reg, 50.0), f"p95 latency {reg:+.0f}% vs baseline"))
    if o.error_rate is not None and o.error_rate > 0.01:
        out.append(_driver("error_rate", o.error_rate, 0.6, f"error rate {o.error_rate:.1%} under load"))
    return out


def _change(ev: Evidence) -> list[Driver]:
    ch = ev.change
    if not ch.ok:
        return []
    out = []
    if ch.additions is not None or ch.deletions is not None:
        lines = (ch.additions or 0) + (ch.deletions or 0)
        if lines < 50:
            out.append(_driver("lines_changed", lines, -0.3, f"small change ({lines} lines)"))
        else:
            # About +0.35 per doubling beyond 250 lines; mid-sized changes slightly below the base rate.
            c = max(-0.2, min(1.5, 0.35 * math.log2(lines / 250)))
            out.append(_driver("lines_changed", lines, c, f"{lines:,} lines changed"))
    if ch.subsystems is not None and ch.subsystems > 3:
        out.append(_driver("subsystems", ch.subsystems, min(0.5, 0.1 * (ch.subsystems - 3)), f"{ch.subsystems} subsystems touched"))
    if ch.has_migration:
        out.append(_driver("has_migration", True, 0.4, "database migration included"))
    if ch.author_experience is not None and ch.author_experience < 5:
        out.append(_driver("author_experience", ch.author_experience, 0.25, f"main author has {ch.author_experience} earlier commits"))
    if ch.hotspots:
        out.append(_driver("hotspots", len(ch.hotspots), min(0.4, 0.1 * len(ch.hotspots)), f"{len(ch.hotspots)} hotspot files touched"))
    return out


def _operational(ev: Evidence) -> list[Driver]:
    op = ev.operational
    if not op.ok:
        return []
    out = []
    rate = op.env_failure_rate_30d
    if rate is not None:
        c = max(-0.3, min(1.0, 3.0 * (rate - 0.1)))
        out.append(_driver("env_failure_rate_30d", rate, c, f"{rate:.0%} of recent deployments to this environment failed"))
    if op.deploys_last_24h is not None and op.deploys_last_24h > 10:
        out.append(_driver("deploys_last_24h", op.deploys_last_24h, 0.2, f"{op.deploys_last_24h} deployments in 24 hours"))
    day = op.weekday if op.weekday is not None else ev.created_at.weekday()
    if day >= 5:
        out.append(_driver("weekday", day, 0.2, "weekend deployment"))
    if op.hours_since_last_deploy is not None and op.hours_since_last_deploy > 720:
        out.append(_driver("hours_since_last_deploy", op.hours_since_last_deploy, 0.2, "over 30 days since the last deployment"))
    return out


def estimate_risk(evidence: Evidence, base_rate: float = BASE_RATE) -> RiskEstimate:
    """Estimate the probability of failure from the evidence with fixed, documented weights."""
    drivers = [
        d
        for group in (_tests, _checks, _coverage, _security, _performance, _change, _operational)
        for d in group(evidence)
        if d.contribution != 0
    ]
    drivers.sort(key=lambda d: -abs(d.contribution))
    z = _logit(base_rate) + sum(d.contribution for d in drivers)
    return RiskEstimate(
        probability=round(1.0 / (1.0 + math.exp(-z)), 4), source="rules", model_version=None,
        base_rate=base_rate, drivers=drivers,
    )  # fmt: skip
