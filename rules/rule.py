"""A rule: data (id, title, severity, texts) plus one pure check over the assessment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rules.severity import RuleSeverity
from rules.types import Dimension, RuleResult, RuleStatus
from scorer.assessment import Assessment
from scorer.evidence import Availability

Check = Callable[[Assessment, "float | None"], RuleResult]


@dataclass(frozen=True)
class Rule:
    """One built-in rule of the catalog."""

    id: str
    dimension: Dimension
    title: str
    severity: RuleSeverity
    why: str
    fix: str
    check: Check
    parts: tuple[str, ...]  # evidence parts the check reads
    threshold: float | None = None
    unit: str = ""
    # What "the repository does not use this source" means for this rule: most rules cannot
    # say anything (unknown); some are simply not applicable (skipped).
    skip_when_not_configured: bool = False
    # Rules that only say whether a source exists (GNG-TEST-002, GNG-SEC-008) read no part but are
    # about one: ``about`` names it for the confidence, and such rules do not count in the score, so a
    # dimension without evidence has no score rather than the score of its missing source.
    about: tuple[str, ...] = ()
    scored: bool = True

    @property
    def sources(self) -> tuple[str, ...]:
        """Return the evidence parts this rule needs read to say something (for the confidence)."""
        return self.about or self.parts

    # Whether a failure seen in part of the evidence stands when the rest was refused: true for rules
    # that count bad things (failing tests, findings), which more evidence can only add to. Any other
    # result on incomplete evidence is unknown.
    failure_stands_on_partial: bool = False
    # A weaker stand-in to judge by when a part is not configured (test checks for missing test reports).
    when_not_configured: Check | None = None

    def evaluate(self, assessment: Assessment, threshold: float | None = None) -> RuleResult:
        """Evaluate the rule, gating on the availability of the evidence parts it reads."""
        limit = self.threshold if threshold is None else threshold
        parts = assessment.evidence.parts()
        incomplete: list[str] = []
        for name in self.parts:
            part = parts[name]
            if part.availability == Availability.OK:
                continue
            if part.availability == Availability.INCOMPLETE:
                incomplete.append(name)
                continue
            if part.availability == Availability.NOT_CONFIGURED and self.when_not_configured is not None:
                return self.when_not_configured(assessment, limit)
            if part.availability == Availability.NOT_CONFIGURED and self.skip_when_not_configured:
                return RuleResult(
                    status=RuleStatus.SKIPPED, threshold=limit, message=f"{name} not configured: {part.reason}"
                )
            return RuleResult(
                status=RuleStatus.UNKNOWN,
                threshold=limit,
                message=f"{name} evidence {part.availability}: {part.reason}",
            )
        result = self.check(assessment, limit)
        if not incomplete or (result.status == RuleStatus.SKIPPED and limit is None):
            return result
        refused = "; ".join(
            f"{r.path} ({r.reason})" if r.path not in r.reason else r.reason
            for name in incomplete for r in parts[name].refused[:3]
        )  # fmt: skip
        if result.status == RuleStatus.FAILED and self.failure_stands_on_partial:
            return result.model_copy(update={
                "message": f"{result.message} (at least: {', '.join(incomplete)} evidence is incomplete, refused {refused})"})
        return RuleResult(
            status=RuleStatus.UNKNOWN, value=result.value, threshold=limit,
            message=f"{', '.join(incomplete)} evidence incomplete, refused {refused}; "
                    f"what was read says: {result.message}",
        )  # fmt: skip


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{int(value)}" if isinstance(value, float) else f"{value}"
    return f"{text}{unit}" if unit in ("%", "ms", "h", "pp") else (f"{text} {unit}" if unit else text)


def _against(
    value: float | None, limit: float | None, what: str, unit: str, details: list[str] | None, upper: bool
) -> RuleResult:
    """Compare ``value`` with a limit that is a maximum (``upper``) or a minimum; skip when either is unknown."""
    if limit is None:
        return RuleResult(status=RuleStatus.SKIPPED, value=value, message="no threshold configured")
    if value is None:
        return RuleResult(status=RuleStatus.SKIPPED, threshold=limit, message=f"{what} not reported")
    ok = value <= limit if upper else value >= limit
    if upper:
        relation = f"{'within' if ok else 'above'} the limit of"
    else:
        relation = f"{'meets' if ok else 'below'} the minimum of"
    return RuleResult(
        status=RuleStatus.PASSED if ok else RuleStatus.FAILED,
        value=value,
        threshold=limit,
        message=f"{what} {_fmt(value, unit)}, {relation} {_fmt(limit, unit)}",
        details=details or [],
    )


def at_most(
    value: float | None, limit: float | None, what: str, unit: str = "", details: list[str] | None = None
) -> RuleResult:
    """Pass when ``value`` <= ``limit``; skip when the value is unknown to the source."""
    return _against(value, limit, what, unit, details, upper=True)


def at_least(
    value: float | None, limit: float | None, what: str, unit: str = "", details: list[str] | None = None
) -> RuleResult:
    """Pass when ``value`` >= ``limit``; skip when the value is unknown to the source."""
    return _against(value, limit, what, unit, details, upper=False)


def unknown(message: str, threshold: float | None = None) -> RuleResult:
    """Return an UNKNOWN result: the evidence exists but does not say."""
    return RuleResult(status=RuleStatus.UNKNOWN, threshold=threshold, message=message)


def skipped(message: str, threshold: float | None = None) -> RuleResult:
    """Return a SKIPPED result: the rule does not apply."""
    return RuleResult(status=RuleStatus.SKIPPED, threshold=threshold, message=message)


def passed(message: str, value: float | str | bool | None = None, threshold: float | None = None) -> RuleResult:
    """Return a PASSED result."""
    return RuleResult(status=RuleStatus.PASSED, value=value, threshold=threshold, message=message)


def failed(
    message: str,
    value: float | str | bool | None = None,
    threshold: float | None = None,
    details: list[str] | None = None,
) -> RuleResult:
    """Return a FAILED result."""
    return RuleResult(
        status=RuleStatus.FAILED, value=value, threshold=threshold, message=message, details=details or []
    )
