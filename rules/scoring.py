"""Readiness scores and confidence from the findings.

Per dimension: a weighted mean of rule credits (passed or waived 1, failed minor 0.5, failed 0),
weighted by severity (blocker 3, major 2, minor 1). Readiness: the mean of the dimensions weighted
by importance and by the share of each dimension's rules that could be evaluated. Unknown and skipped rules are left out of the score; unknown ones lower
the confidence, which is the weighted share of applicable rules whose evidence was available.
"""

from __future__ import annotations

from collections.abc import Iterable

from rules.types import DIMENSIONS, DimensionScore, Finding

SEVERITY_WEIGHT: dict[str, float] = {"blocker": 3.0, "major": 2.0, "minor": 1.0}
MINOR_FAILURE_CREDIT = 0.5
DIMENSION_WEIGHT: dict[str, float] = {
    "quality": 0.30, "security": 0.25, "performance": 0.15, "operational": 0.10, "change": 0.20,
}  # fmt: skip


def credit(finding: Finding) -> float | None:
    """Return the score credit of one finding, or None when it does not count."""
    if finding.status in ("passed", "waived"):
        return 1.0
    if finding.status == "failed":
        return MINOR_FAILURE_CREDIT if finding.severity == "minor" else 0.0
    return None


def dimension_scores(findings: Iterable[Finding]) -> dict[str, DimensionScore]:
    """Score each dimension 0-100 (None when none of its rules could be evaluated)."""
    out: dict[str, DimensionScore] = {}
    items = list(findings)
    for dim in DIMENSIONS:
        mine = [f for f in items if f.dimension == dim]
        total = earned = 0.0
        possible = sum(SEVERITY_WEIGHT[f.severity] for f in mine)
        for f in mine:
            c = credit(f)
            if c is not None:
                w = SEVERITY_WEIGHT[f.severity]
                total += w
                earned += w * c
        out[dim] = DimensionScore(
            score=round(100.0 * earned / total, 1) if total else None,
            weight=DIMENSION_WEIGHT[dim],
            coverage=round(total / possible, 3) if possible else 0.0,
            passed=sum(f.status == "passed" for f in mine),
            failed=sum(f.status == "failed" for f in mine),
            unknown=sum(f.status == "unknown" for f in mine),
            skipped=sum(f.status == "skipped" for f in mine),
            waived=sum(f.status == "waived" for f in mine),
        )
    return out


def readiness(dimensions: dict[str, DimensionScore]) -> float:
    """Return the mean of the scored dimensions, weighted by importance times the share of rules evaluated.

    A dimension judged on one rule out of eight (the rest skipped or unknown) counts for little, so a
    single finding cannot swing the readiness score.
    """
    scored = [(d.score, d.weight * d.coverage) for d in dimensions.values() if d.score is not None]
    weight = sum(w for _, w in scored)
    if not weight:
        return 0.0
    return round(sum(s * w for s, w in scored) / weight, 1)


def confidence(findings: Iterable[Finding]) -> float:
    """Return the weighted share of applicable rules whose evidence was available (0..1)."""
    known = expected = 0.0
    for f in findings:
        if f.status == "skipped":
            continue
        w = SEVERITY_WEIGHT[f.severity]
        expected += w
        if f.status != "unknown":
            known += w
    return round(known / expected, 3) if expected else 0.0
