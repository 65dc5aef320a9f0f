"""Readiness scores and confidence from the findings.

Per dimension, from the rules that judge evidence (not the ones that only report a missing source):
the mean of rule credits weighted by severity (blocker 3, major 2, minor 1; passed or waived 1,
failed minor 0.5, other failures 0), multiplied by a penalty for every failed rule that grows with
its severity and with how far the value is past the threshold. A dimension none of whose rules
could judge evidence has no score (None, shown as n/a). Readiness is the importance-weighted mean of
the dimensions that have a score. Confidence is the importance-weighted share of the evidence sources
the enabled rules judge that was actually read (a source counts in part when only a stand-in was read
or some of its rules could not say): 0 with nothing read, 1 only when every source was read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rules.types import DIMENSIONS, DimensionScore, Finding

SEVERITY_WEIGHT: dict[str, float] = {"blocker": 3.0, "major": 2.0, "minor": 1.0}
MINOR_FAILURE_CREDIT = 0.5
# Multiplier on the dimension score for one failed rule that is just past its threshold; it is
# raised to 1 + log10(1 + overshoot), so 19 critical vulnerabilities weigh more than one.
FAILURE_PENALTY: dict[str, float] = {"blocker": 0.3, "major": 0.6, "minor": 0.9}
_MAX_OVERSHOOT_EXPONENT = 2.0
# How much each source tells about a release, for the confidence: whether its pipeline passed and
# its tests ran weigh most, then what changed and whether it is known vulnerable, then the rest.
SOURCE_WEIGHT: dict[str, float] = {
    "checks": 3.0, "tests": 3.0, "change": 2.0, "security": 2.0, "coverage": 1.0, "performance": 1.0, "operational": 1.0,
}  # fmt: skip
DIMENSION_WEIGHT: dict[str, float] = {
    "quality": 0.30, "security": 0.25, "performance": 0.15, "operational": 0.10, "change": 0.20,
}  # fmt: skip


def credit(finding: Finding) -> float | None:
    """Return the score credit of one finding, or None when it does not count."""
    if not finding.scored:
        return None
    if finding.status in ("passed", "waived"):
        return 1.0
    if finding.status == "failed":
        return MINOR_FAILURE_CREDIT if finding.severity == "minor" else 0.0
    return None


def overshoot(finding: Finding) -> float:
    """Return how far a failed finding's value is past its threshold, as log10(1 + gap / scale), capped."""
    value, limit = finding.value, finding.threshold
    if isinstance(value, bool) or not isinstance(value, int | float) or limit is None:
        return 0.0
    gap = abs(float(value) - limit) / max(abs(limit), 1.0)
    return min(_MAX_OVERSHOOT_EXPONENT, math.log10(1.0 + gap))


def penalty(finding: Finding) -> float:
    """Return the multiplier a failed, scored finding puts on its dimension's score (1 otherwise)."""
    if not finding.scored or finding.status != "failed":
        return 1.0
    return math.pow(FAILURE_PENALTY[finding.severity], 1.0 + overshoot(finding))


def dimension_scores(findings: Iterable[Finding]) -> dict[str, DimensionScore]:
    """Score each dimension 0-100 (None when none of its rules could judge evidence)."""
    out: dict[str, DimensionScore] = {}
    items = list(findings)
    for dim in DIMENSIONS:
        mine = [f for f in items if f.dimension == dim]
        scored = [f for f in mine if f.scored]
        total = earned = 0.0
        factor = 1.0
        possible = sum(SEVERITY_WEIGHT[f.severity] for f in scored)
        for f in scored:
            c = credit(f)
            if c is not None:
                w = SEVERITY_WEIGHT[f.severity]
                total += w
                earned += w * c
                factor *= penalty(f)
        out[dim] = DimensionScore(
            score=round(100.0 * earned / total * factor, 1) if total else None,
            weight=DIMENSION_WEIGHT[dim],
            coverage=round(total / possible, 3) if possible else 0.0,
            passed=sum(f.status == "passed" for f in mine),
            failed=sum(f.status == "failed" for f in mine),
            unknown=sum(f.status == "unknown" for f in mine),
            skipped=sum(f.status == "skipped" for f in mine),
            waived=sum(f.status == "waived" for f in mine),
        )
    return out


def readiness(dimensions: dict[str, DimensionScore]) -> float | None:
    """Return the importance-weighted mean of the dimensions that have a score, or None when none has.

    The weights do not depend on how many rules a dimension could evaluate, so a failure can only
    lower the readiness; thin evidence shows in the confidence instead.
    """
    scored = [(d.score, d.weight) for d in dimensions.values() if d.score is not None]
    weight = sum(w for _, w in scored)
    if not weight:
        return None
    return round(sum(s * w for s, w in scored) / weight, 1)


def source_shares(findings: Iterable[Finding], part_read: Mapping[str, float]) -> dict[str, float]:
    """Return, per source an enabled rule judges, the share read: how much of the part was read times
    the severity-weighted share of its rules that could say something (not unknown)."""
    judged: dict[str, float] = {}
    expected: dict[str, float] = {}
    for f in findings:
        w = SEVERITY_WEIGHT[f.severity]
        for name in f.sources:
            expected[name] = expected.get(name, 0.0) + w
            if f.status != "unknown":
                judged[name] = judged.get(name, 0.0) + w
    return {
        name: round(part_read.get(name, 0.0) * judged.get(name, 0.0) / total, 3)
        for name, total in expected.items()
        if total
    }


def confidence(findings: Iterable[Finding], part_read: Mapping[str, float]) -> float:
    """Return the importance-weighted share (0..1) of the evidence the enabled rules need that was read.

    0 when nothing was read, 1 only when every source some enabled rule judges was read in full.
    """
    shares = source_shares(findings, part_read)
    weight = sum(SOURCE_WEIGHT.get(name, 1.0) for name in shares)
    if not weight:
        return 0.0
    return round(sum(SOURCE_WEIGHT.get(name, 1.0) * share for name, share in shares.items()) / weight, 3)
