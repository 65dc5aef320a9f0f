"""Choose a rollout strategy from the risk and the evidence (migrations, regressions, change size)."""

from __future__ import annotations

from rules.policy import EnvironmentPolicy
from rules.types import Finding, Strategy, StrategyName
from scorer.assessment import Assessment, RiskEstimate
from scorer.completeness import first_deployment

LARGE_CHANGE_LINES = 1000
LARGE_CHANGE_SUBSYSTEMS = 5
NOTABLE_REGRESSION_PCT = 5.0
DIRECT_SHARE_OF_APPROVE = 2 / 3  # below this share of approve.max_risk a plain deployment is fine

_STEPS: dict[StrategyName, list[str]] = {
    "direct": ["Deploy to all instances as usual.", "Keep the previous version ready to redeploy."],
    "canary": [
        "Route 5% of traffic to the new version for 15 minutes.",
        "If the watched signals hold, go to 25% for 30 minutes, then 50%, then 100%.",
        "Roll back at once if error rate or p95 latency exceeds the current version's by more than 10%.",
    ],
    "blue-green": [
        "Apply the database migration first as a backward-compatible (expand) step.",
        "Deploy the new version to the idle environment and smoke-test it.",
        "Switch traffic; keep the old environment running so you can switch back instantly.",
        "Remove old columns/tables (contract) only in a later deployment.",
    ],
    "feature-flag": [
        "Deploy with the new behaviour switched off.",
        "Enable it for internal users, then for a growing share of users.",
        "Turn the flag off instead of rolling back if something goes wrong; remove it once stable.",
    ],
}
_BASE_WATCH = ["error rate compared with the previous version", "p95 latency"]
_FIRST_WATCH = ["error rate", "p95 latency"]
_FIRST_STEPS = [
    "Deploy to all instances; this is the first release in this environment, so there is no previous version.",
    "Keep a way to take it out of service (remove the route or scale to zero) if it misbehaves.",
]


def _signals(assessment: Assessment, findings: list[Finding]) -> tuple[bool, list[str], bool, str]:
    ev = assessment.evidence
    migration = bool(ev.change.ok and ev.change.has_migration)
    regressed: list[str] = []
    failed_ids = {f.rule_id for f in findings if f.status == "failed"}
    if ev.performance.ok:
        o = ev.performance.overall
        notable = o is not None and o.regression_pct is not None and o.significant is not False and (
            o.regression_pct > NOTABLE_REGRESSION_PCT or "GNG-PERF-002" in failed_ids
        )
        if notable and o is not None:
            regressed.append(f"overall p95 ({o.regression_pct:+.0f}%)")
        regressed += [
            f"{t.name} p95 ({t.regression_pct:+.0f}%)"
            for t in ev.performance.transactions
            if t.regression_pct is not None and t.regression_pct > NOTABLE_REGRESSION_PCT and t.significant is not False
        ][:5]
    size = ""
    large = False
    if ev.change.ok:
        lines = (ev.change.additions or 0) + (ev.change.deletions or 0)
        subs = ev.change.subsystems or 0
        if lines > LARGE_CHANGE_LINES or subs > LARGE_CHANGE_SUBSYSTEMS:
            large = True
            size = f"{lines:,} lines over {subs} subsystems"
    return migration, regressed, large, size


def choose_strategy(
    assessment: Assessment, findings: list[Finding], risk: RiskEstimate, env: EnvironmentPolicy
) -> Strategy:
    """Suggest how to roll out: the policy's choice if set, else from risk and evidence."""
    migration, regressed, large, size = _signals(assessment, findings)
    first = first_deployment(assessment.evidence)
    # With no earlier release there is no previous version to compare with or to go back to.
    watch = (_FIRST_WATCH if first else list(_BASE_WATCH)) + [f"latency of {r}" for r in regressed]
    if env.strategy != "auto":
        return Strategy(
            name=env.strategy, reason=f"set by the policy for this environment (strategy: {env.strategy})",
            steps=_STEPS[env.strategy], watch=watch, overridden=True,
        )  # fmt: skip
    if migration:
        return Strategy(
            name="blue-green",
            reason="the change includes a database migration: keep the old version running for an instant switch back "
            "while the schema serves both",
            steps=_STEPS["blue-green"], watch=watch + ["database errors and slow queries after the migration"],
        )  # fmt: skip
    if regressed:
        return Strategy(
            name="canary", reason=f"performance regressed against the baseline ({', '.join(regressed[:3])}): "
            "expose a small share of traffic first and watch latency",
            steps=_STEPS["canary"], watch=watch,
        )  # fmt: skip
    if large:
        return Strategy(
            name="feature-flag", reason=f"large change ({size}): ship it dark and enable it gradually",
            steps=_STEPS["feature-flag"], watch=watch,
        )  # fmt: skip
    if risk.probability > env.approve.max_risk * DIRECT_SHARE_OF_APPROVE:
        return Strategy(
            name="canary", reason=f"elevated risk ({risk.probability:.0%}): limit the blast radius with a canary",
            steps=_STEPS["canary"], watch=watch,
        )  # fmt: skip
    return Strategy(
        name="direct", reason=f"low risk ({risk.probability:.0%}); " + "; ".join(_known_facts(assessment)),
        steps=_FIRST_STEPS if first else _STEPS["direct"], watch=watch,
    )  # fmt: skip


def _known_facts(assessment: Assessment) -> list[str]:
    """Say what the evidence shows about size, migrations and performance, and "unknown" where it is silent."""
    ev = assessment.evidence
    ch, perf = ev.change, ev.performance
    facts = []
    if ch.ok and (ch.additions is not None or ch.deletions is not None):
        facts.append(f"change of {(ch.additions or 0) + (ch.deletions or 0):,} lines (not large)")
    else:
        facts.append("change size unknown")
    if ch.ok and ch.has_migration is False:
        facts.append("no database migration")
    else:
        facts.append("migrations unknown")
    o = perf.overall if perf.ok else None
    if o is None:
        facts.append("performance not measured")
    elif o.regression_pct is None:
        facts.append("performance measured but not compared with a baseline")
    else:
        facts.append("no notable performance regression against the baseline")
    return facts
