"""Value types of the judgement layer: rule results, findings, waivers and the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.learning import TrackRecord
from rules.severity import RuleSeverity
from scorer.assessment import RiskEstimate
from scorer.evidence import Evidence

Dimension = Literal["quality", "security", "performance", "operational", "change"]
DIMENSIONS: tuple[Dimension, ...] = ("quality", "security", "performance", "operational", "change")
Verdict = Literal["go", "escalate", "no-go"]
Action = Literal["approve", "reject", "escalate"]
StrategyName = Literal["direct", "canary", "blue-green", "feature-flag"]


class RuleStatus(StrEnum):
    """Outcome of one rule on one assessment."""

    PASSED = "passed"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the evidence it needs is unavailable
    SKIPPED = "skipped"  # not applicable (e.g. no performance tests configured)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class RuleResult(_Model):
    """What one rule observed: its status, the observed value and the threshold it was held to."""

    status: RuleStatus
    value: float | int | str | bool | None = None
    threshold: float | None = None
    message: str = ""
    details: list[str] = Field(default_factory=list)  # e.g. the failing test names (capped)
    # A rule may judge its own failure less severe when weaker evidence stands in for what it asks
    # (test checks instead of test reports); the policy can refuse that (tests.require_reports).
    relaxed_to: RuleSeverity | None = None


def same_account(login: str | None, account_id: int | None, other_login: str | None, other_id: int | None) -> bool:
    """Whether two GitHub users are one account: the same id when both are known, or the same login.

    An account keeps its id when it changes its login (and its teams and permissions with it); the login
    still counts for records kept before ids were.
    """
    if account_id is not None and other_id is not None and account_id == other_id:
        return True
    return bool(login) and bool(other_login) and (login or "").lower() == (other_login or "").lower()


class Waiver(_Model):
    """A reviewer's permission to ignore one failed rule in one environment until a date."""

    rule_id: str
    environment: str
    sha: str | None = None
    expires_at: datetime
    reason: str
    author: str
    author_id: int | None = None  # the author's account id, when known: it stays when the login changes
    granted_at: datetime | None = None  # when it was given: waivers.max_lifetime counts from here
    # When it stops counting under the policy of the decision that lists it (set by the rules engine): its own
    # end, or its grant plus the waivers.max_lifetime in force then, whichever comes first.
    counts_until: datetime | None = None

    def by(self, login: str | None, account_id: int | None) -> bool:
        """Return whether this waiver was given by that account (by id when both are known, else by login)."""
        return same_account(self.author, self.author_id, login, account_id)

    @field_validator("expires_at", "granted_at", "counts_until")
    @classmethod
    def _utc_if_naive(cls, value: datetime | None) -> datetime | None:
        # A date without a zone ("until 2026-12-31") is read as UTC.
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)

    def ends_at(self, max_lifetime: timedelta | None = None) -> datetime:
        """Return when this waiver stops counting: its own end, or its grant plus ``max_lifetime`` if sooner.

        ``max_lifetime`` is the policy's waivers.max_lifetime in force now, not the one of the day it was given:
        shortening the cap shortens the waivers already given. Without a grant time only its own end bounds it.
        """
        if max_lifetime is None or self.granted_at is None:
            return self.expires_at
        try:
            return min(self.expires_at, self.granted_at + max_lifetime)
        except OverflowError:  # a cap past the calendar's end bounds nothing
            return self.expires_at

    def covers(self, rule_id: str, environment: str, sha: str) -> bool:
        """Return whether this waiver is about the rule for this environment and commit, whatever the time."""
        return (
            self.rule_id == rule_id
            and self.environment in (environment, "*")
            and (self.sha is None or self.sha == sha)
        )

    def applies(
        self, rule_id: str, environment: str, sha: str, now: datetime, max_lifetime: timedelta | None = None
    ) -> bool:
        """Return whether this waiver covers the rule for this deployment at ``now`` (see ``ends_at``)."""
        moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        return self.covers(rule_id, environment, sha) and moment < self.ends_at(max_lifetime)


FindingStatus = Literal["passed", "failed", "unknown", "skipped", "waived"]


class Finding(_Model):
    """One rule's result in a decision, with the text a person needs to act on it."""

    rule_id: str
    title: str
    dimension: Dimension
    severity: RuleSeverity
    status: FindingStatus
    value: float | int | str | bool | None = None
    threshold: float | None = None
    unit: str = ""
    message: str = ""
    why: str = ""
    remediation: str = ""
    details: list[str] = Field(default_factory=list)
    waiver: Waiver | None = None
    scored: bool = True  # counts in its dimension's score (rules that only report a missing source do not)
    sources: list[str] = Field(default_factory=list)  # evidence parts it judges, for the confidence (none when off)
    learned: bool = False  # a major relaxed to minor for this repository by its outcomes (rules/learning.py)


class DimensionScore(_Model):
    """Score 0-100 of one dimension, or None when none of its rules could be evaluated."""

    score: float | None
    weight: float
    coverage: float = 1.0  # share of the dimension's rule weight that was evaluated (not skipped/unknown)
    passed: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    waived: int = 0


class Recommendation(_Model):
    """One thing to fix, in priority order."""

    priority: int
    rule_id: str
    title: str
    severity: RuleSeverity
    remediation: str
    reason: str  # why it is at this place in the list


class OutcomeChange(_Model):
    """One condition that stands between this decision and a go, and what closes it."""

    kind: Literal["fix_findings", "risk", "score", "confidence", "evidence", "freeze", "policy"]
    text: str
    rule_ids: list[str] = Field(default_factory=list)
    gap: float | None = None  # by how much the condition is missed


class Strategy(_Model):
    """A rollout strategy suggestion with its reason."""

    name: StrategyName
    reason: str
    steps: list[str] = Field(default_factory=list)
    watch: list[str] = Field(default_factory=list)
    overridden: bool = False  # the environment's policy chose it


class ReviewerSet(_Model):
    """Who may decide an escalation, copied from the environment's policy."""

    users: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    four_eyes: bool = True


class FreezeStatus(_Model):
    """An active deployment freeze."""

    active: bool
    reason: str
    ends_at: datetime | None = None


class Decision(_Model):
    """The verdict on one deployment and everything that explains it."""

    verdict: Verdict  # what gonogo decided (or would have decided, in dry-run)
    action: Action  # what it actually does: approve, reject or hand to humans
    mode: Literal["enforce", "dry-run"] = "enforce"
    environment: str
    repository: str
    sha: str
    deployment_id: str
    decided_at: datetime
    readiness_score: float | None  # None when no dimension could be scored
    confidence: float
    evidence_read: dict[str, float] = Field(default_factory=dict)  # per source the policy cares about: share read
    dimensions: dict[str, DimensionScore]
    risk: RiskEstimate
    findings: list[Finding]
    blocking: list[str]  # rule ids of the failed blockers
    reasons: list[str]  # why this verdict, in plain words
    recommendations: list[Recommendation]
    what_would_change: list[OutcomeChange]
    strategy: Strategy
    reviewers: ReviewerSet
    waivers: list[Waiver] = Field(default_factory=list)  # active waivers that were applied
    # waivers of failed rules that ended under the current waivers.max_lifetime before their own end
    lapsed_waivers: list[Waiver] = Field(default_factory=list)
    freeze: FreezeStatus | None = None
    policy_errors: list[str] = Field(default_factory=list)
    policy_source: str = ""
    learning: list[TrackRecord] = Field(default_factory=list)  # the outcome record of each learnable rule
    evidence: Evidence

    @property
    def major_findings(self) -> list[str]:
        """Rule ids that failed as majors, counting those relaxed by learning (what the history records)."""
        return [f.rule_id for f in self.findings if f.status == "failed" and (f.severity == "major" or f.learned)]

    @property
    def blocking_findings(self) -> list[Finding]:
        """Return the findings that block this deployment."""
        ids = set(self.blocking)
        return [f for f in self.findings if f.rule_id in ids]

    def to_json(self) -> str:
        """Serialise losslessly to JSON."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        """Read a decision back from JSON."""
        return cls.model_validate_json(text)

    def summary_dict(self) -> dict[str, Any]:
        """Return the stable JSON shape of ``gonogo assess --format json``."""
        return {
            "decision": self.verdict,
            "action": self.action,
            "mode": self.mode,
            "environment": self.environment,
            "readiness_score": self.readiness_score,
            "risk": self.risk.probability,
            "risk_source": self.risk.source,
            "model_version": self.risk.model_version,
            "confidence": self.confidence,
            "dimensions": {k: {"score": v.score} for k, v in self.dimensions.items()},
            "findings": [
                {
                    "rule_id": f.rule_id,
                    "title": f.title,
                    "dimension": f.dimension,
                    "severity": f.severity,
                    "status": f.status,
                    "value": f.value,
                    "threshold": f.threshold,
                    "message": f.message,
                    "remediation": f.remediation,
                }
                for f in self.findings
            ],
            "blocking": list(self.blocking),
            "reasons": list(self.reasons),
            "recommendations": [r.model_dump(mode="json") for r in self.recommendations],
            "what_would_change": [c.model_dump(mode="json") for c in self.what_would_change],
            "strategy": self.strategy.model_dump(mode="json"),
            "reviewers": self.reviewers.model_dump(mode="json"),
            "waivers": [w.model_dump(mode="json") for w in self.waivers],
            "freeze": self.freeze.model_dump(mode="json") if self.freeze else None,
            "policy_errors": list(self.policy_errors),
            "evidence": self.evidence.model_dump(mode="json"),
        }
