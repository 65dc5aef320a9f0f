"""Operational rules: the environment's recent history and the deployment's timing."""

from __future__ import annotations

from rules.rule import Check, Rule, at_least, at_most, failed, passed, skipped
from rules.severity import RuleSeverity
from rules.types import RuleResult
from scorer.assessment import Assessment

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _failure_rate(a: Assessment, limit: float | None) -> RuleResult:
    rate = a.evidence.operational.env_failure_rate_30d
    if rate is None:
        return skipped("no history yet: no deployment outcome recorded in the last 30 days", limit)
    return at_most(None if rate is None else round(rate * 100, 2), limit, "failed deployments in 30 days", "%")


def _pace(a: Assessment, limit: float | None) -> RuleResult:
    return at_most(a.evidence.operational.deploys_last_24h, limit, "deployments to this environment in 24 hours")


def _working_day(a: Assessment, limit: float | None) -> RuleResult:
    op = a.evidence.operational
    day = op.weekday if op.weekday is not None else a.evidence.created_at.weekday()
    if day >= 5:
        return failed(f"deployment requested on a {_DAYS[day]}, when fewer people can respond", value=_DAYS[day])
    return passed(f"deployment requested on a {_DAYS[day]}", value=_DAYS[day])


def _settled(a: Assessment, limit: float | None) -> RuleResult:
    hours = a.evidence.operational.hours_since_last_deploy
    if hours is None:
        return skipped("no history yet: no earlier deployment to this environment", limit)
    return at_least(round(hours, 2), limit, "hours since the last deployment", "h")


def _not_stale(a: Assessment, limit: float | None) -> RuleResult:
    hours = a.evidence.operational.hours_since_last_deploy
    if hours is None:
        return skipped("no history yet: no earlier deployment to this environment", limit)
    return at_most(round(hours, 2), limit, "hours since the last deployment", "h")


def _rule(
    id_: str, title: str, severity: RuleSeverity, threshold: float | None, unit: str, why: str, fix: str, check: Check
) -> Rule:
    return Rule(
        id=id_, dimension="operational", title=title, severity=severity, why=why, fix=fix,
        check=check, parts=("operational",), threshold=threshold, unit=unit, skip_when_not_configured=True,
    )  # fmt: skip


RULES: list[Rule] = [
    _rule(
        "GNG-OPS-001", "Ensure the environment's recent failure rate is low", "minor", 20, "%",
        "An environment where many recent deployments failed is fragile; the next one is likelier to fail too.",
        "Review the recent failed deployments and their causes before adding another change.",
        _failure_rate,
    ),
    _rule(
        "GNG-OPS-002", "Ensure deployments to the environment are not piling up", "minor", 10, "",
        "Many deployments in a day make it hard to tell which one caused a problem.",
        "Batch changes or wait for the previous ones to settle.",
        _pace,
    ),
    _rule(
        "GNG-OPS-003", "Ensure the deployment happens on a working day", "minor", None, "",
        "Weekend deployments meet fewer people able to respond to a problem.",
        "Deploy on a working day, or make sure an on-call engineer is watching.",
        _working_day,
    ),
    _rule(
        "GNG-OPS-004", "Ensure the previous deployment had time to settle", "minor", 0.25, "h",
        "Deploying on top of a deployment that has not settled mixes the effects of both.",
        "Wait until the previous deployment has been observed healthy for a while.",
        _settled,
    ),
    _rule(
        "GNG-OPS-005", "Ensure the environment was deployed recently", "minor", 720, "h",
        "A long gap since the last deployment means a big-bang release and a stale rollback target.",
        "Deploy smaller batches more often; check the rollback target still works.",
        _not_stale,
    ),
]
