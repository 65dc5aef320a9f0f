"""The go / escalate / no-go decision under a policy, with everything that explains it."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from rules.catalog import CATALOG, RULES_BY_ID
from rules.freeze import freeze_until
from rules.learning import TrackRecord, judge
from rules.policy import (
    EnvironmentPolicy,
    Policy,
    PolicyError,
    PolicyIssue,
    default_policy,
    effective,
    format_duration,
)
from rules.scoring import (
    SEVERITY_WEIGHT,
    SOURCE_WEIGHT,
    confidence,
    dimension_scores,
    readiness,
    source_shares,
)
from rules.strategy import choose_strategy
from rules.types import (
    Action,
    Decision,
    Finding,
    FindingStatus,
    FreezeStatus,
    OutcomeChange,
    Recommendation,
    ReviewerSet,
    RuleResult,
    RuleStatus,
    Verdict,
    Waiver,
)
from scorer.assessment import Assessment, RiskEstimate
from scorer.completeness import first_deployment, part_read_share
from scorer.evidence import Availability, Evidence
from scorer.heuristic import estimate_risk

log = logging.getLogger(__name__)

_ACTION: dict[Verdict, Action] = {"go": "approve", "no-go": "reject", "escalate": "escalate"}
_SEVERITY_RANK = {"blocker": 0, "major": 1, "minor": 2}
NO_HISTORY = "no history yet"


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def evaluate_rules(
    env: EnvironmentPolicy, assessment: Assessment, environment: str, now: datetime, waivers: Iterable[Waiver] = (),
    scope: Collection[str] | None = None, learned: Mapping[str, TrackRecord] | None = None,
) -> tuple[list[Finding], list[Waiver]]:
    """Evaluate every catalog rule with the environment's overrides and apply active waivers.

    A waiver counts until its own end or its grant plus the environment's waivers.max_lifetime, whichever
    comes first: the cap in force now, so a shortened cap also shortens the waivers given before it.

    ``scope`` names the evidence parts this kind of assessment can read at all (offline: the artifact
    parts); rules about other parts do not count in the confidence. ``learned`` holds the judged
    outcome records (rules.learning.judge): a failed major whose record earned it becomes minor.
    """
    ev = assessment.evidence
    sha = ev.sha
    active = list(waivers)
    cap = env.waivers.max_lifetime
    findings: list[Finding] = []
    applied: list[Waiver] = []
    # On the first deployment to an environment there may be no earlier release to measure the change
    # against; that is missing history, not missing evidence, so it neither escalates nor lowers confidence.
    # Only a change with nothing to compare against counts as missing history: a compare that failed (an
    # error, a refusal, a timeout) is unread evidence like any other and never lets a deployment through.
    no_base = first_deployment(ev) and ev.change.availability is Availability.NOT_CONFIGURED
    for rule in CATALOG:
        ov = env.override(rule.id)
        severity = ov.severity if ov and ov.severity else rule.severity
        threshold = ov.threshold if ov and ov.threshold is not None else rule.threshold
        base = Finding(
            rule_id=rule.id, title=rule.title, dimension=rule.dimension, severity=severity, unit=rule.unit,
            why=rule.why, remediation=rule.fix, status="skipped", threshold=threshold, scored=rule.scored,
        )  # fmt: skip
        if ov is not None and not ov.enabled:
            findings.append(base.model_copy(update={"message": "turned off by the policy"}))
            continue
        sources = [name for name in rule.sources if scope is None or name in scope]
        if no_base and "change" in rule.parts:
            result = RuleResult(status=RuleStatus.SKIPPED, threshold=threshold, message=f"{NO_HISTORY}: {ev.change.reason}")
            sources = [name for name in sources if name != "change"]
        else:
            result = rule.evaluate(assessment, threshold)
        status: FindingStatus = result.status.value
        if result.relaxed_to is not None and not (ov and ov.severity) and not env.tests.require_reports:
            # Weaker evidence stands in (test checks for reports): a recommendation, unless the policy insists.
            severity = max(severity, result.relaxed_to, key=_SEVERITY_RANK.__getitem__)
        record = (learned or {}).get(rule.id)
        relaxed = (status == "failed" and severity == "major" and record is not None and record.relaxed
                   and not (ov and ov.severity))  # fmt: skip
        details = result.details
        if relaxed and record is not None:  # a recommendation in this repository: its own outcomes vouch for it
            severity = "minor"
            details = [*details, f"Relaxed to a recommendation: {record.why}."]
        waiver = None
        if status == "failed":
            waiver = next((w for w in active if w.applies(rule.id, environment, sha, _aware(now), cap)), None)
            if waiver is not None:
                waiver = waiver.model_copy(update={"counts_until": waiver.ends_at(cap)})
                status = "waived"
                applied.append(waiver)
        findings.append(base.model_copy(update={
            "status": status, "severity": severity, "value": result.value, "threshold": result.threshold, "message": result.message,
            "details": details, "waiver": waiver, "sources": sources, "learned": relaxed,
        }))  # fmt: skip
    return findings, applied


def lapsed_waivers(
    env: EnvironmentPolicy,
    findings: Iterable[Finding],
    waivers: Iterable[Waiver],
    environment: str,
    sha: str,
    now: datetime,
) -> list[Waiver]:
    """The waivers of failed rules that are still within their own end but past the current max_lifetime.

    Each comes back with ``counts_until`` set to the moment it stopped counting, for the reasons and the report.
    """
    cap, moment = env.waivers.max_lifetime, _aware(now)
    failed = [f.rule_id for f in findings if f.status == "failed"]
    return [
        w.model_copy(update={"counts_until": w.ends_at(cap)})
        for w in waivers
        if any(w.covers(rule_id, environment, sha) for rule_id in failed)
        and w.applies(w.rule_id, environment, sha, moment)  # by its own end it would still count
        and not w.applies(w.rule_id, environment, sha, moment, cap)
    ]


def lapsed_waiver_reason(waiver: Waiver, max_lifetime: timedelta) -> str:
    """Say why a waiver past the current waivers.max_lifetime no longer counts, and what to do."""
    ended = waiver.ends_at(max_lifetime)
    return (f"the waiver of {waiver.rule_id} by @{waiver.author} (until {waiver.expires_at:%Y-%m-%d}) does not "
            f"count: it expired under the current max_lifetime ({format_duration(max_lifetime)}, "
            f"waivers.max_lifetime, counted from when it was given) on {ended:%Y-%m-%d %H:%M} UTC; "
            "a reviewer may grant a new one")  # fmt: skip


def freeze_status(env: EnvironmentPolicy, assessment: Assessment, now: datetime) -> FreezeStatus | None:
    """Return the active freeze (from the policy's windows or the evidence), if any."""
    held = freeze_until([(w.start, w.end, w.timezone) for w in env.freeze], _aware(now))
    if held is not None:
        w, ends = env.freeze[held[0]], held[1]  # overlapping or back-to-back windows: until the last one ends
        label = w.reason or f"freeze {w.start} to {w.end} ({w.timezone})"
        return FreezeStatus(active=True, reason=label, ends_at=ends)
    op = assessment.evidence.operational
    if op.freeze_active:
        return FreezeStatus(active=True, reason=op.freeze_reason or "deployment freeze reported by the environment")
    return None


def _score_with(findings: list[Finding], fixed: set[str]) -> float:
    changed = [f.model_copy(update={"status": "passed"}) if f.rule_id in fixed else f for f in findings]
    return readiness(dimension_scores(changed)) or 0.0


def _smallest_fix_set(findings: list[Finding], must: set[str], target: float) -> list[str]:
    """Greedily pick failed findings to fix, largest score gain first, until the score reaches target."""
    fixed = set(must)
    candidates = [f.rule_id for f in findings if f.status == "failed" and f.rule_id not in fixed]
    while _score_with(findings, fixed) < target and candidates:
        best = max(candidates, key=lambda rid: _score_with(findings, fixed | {rid}))
        fixed.add(best)
        candidates.remove(best)
    return [f.rule_id for f in findings if f.rule_id in fixed and f.rule_id not in must]


def _confidence_set(findings: list[Finding], part_read: dict[str, float], target: float) -> list[str]:
    """Pick the sources that, once fully read, lift the confidence to target (largest gain first)."""
    shares = source_shares(findings, part_read)
    chosen: list[str] = []
    for name in sorted((n for n, v in shares.items() if v < 1.0), key=lambda n: (-SOURCE_WEIGHT.get(n, 1.0) * (1 - shares[n]), n)):
        if _confidence_if_read(findings, part_read, chosen) >= target:
            break
        chosen.append(name)
    return chosen


def _confidence_if_read(findings: list[Finding], part_read: dict[str, float], names: list[str]) -> float:
    read = {**part_read, **dict.fromkeys(names, 1.0)}
    known = [f.model_copy(update={"status": "passed"}) if f.status == "unknown" and set(f.sources) & set(names) else f
             for f in findings]  # fmt: skip
    return confidence(known, read)


def _recommendations(findings: list[Finding]) -> list[Recommendation]:
    failed = sorted(
        (f for f in findings if f.status == "failed"),
        key=lambda f: (_SEVERITY_RANK[f.severity], -SEVERITY_WEIGHT[f.severity], f.rule_id),
    )
    out: list[Recommendation] = []
    for f in failed:
        reason = {"blocker": "blocks the deployment", "major": "lowers the score most", "minor": "minor finding"}[f.severity]
        out.append(Recommendation(priority=len(out) + 1, rule_id=f.rule_id, title=f.title, severity=f.severity,
                                  remediation=f.remediation, reason=reason))  # fmt: skip
    unknown = sorted((f for f in findings if f.status == "unknown"), key=lambda f: (_SEVERITY_RANK[f.severity], f.rule_id))
    for f in unknown:
        out.append(Recommendation(
            priority=len(out) + 1, rule_id=f.rule_id, title=f.title, severity=f.severity,
            remediation=f"Make the evidence available ({f.message}).", reason="evidence missing, lowers confidence",
        ))  # fmt: skip
    return out


def _judge(
    env: EnvironmentPolicy, findings: list[Finding], score: float | None, conf: float, risk: RiskEstimate,
    freeze: FreezeStatus | None, part_read: dict[str, float],
) -> tuple[Verdict, list[str], list[OutcomeChange]]:  # fmt: skip
    blocking = [f for f in findings if f.status == "failed" and f.severity == "blocker"]
    reasons: list[str] = []
    changes: list[OutcomeChange] = []
    p = risk.probability
    for f in blocking:
        reasons.append(f"{f.rule_id} failed ({f.title}): {f.message}")
    # Severity means: a failed blocker rejects, a failed major needs a human, a failed minor lowers the score.
    majors = [f for f in findings if f.status == "failed" and f.severity == "major"]
    must_fix = [f.rule_id for f in blocking + majors]
    if must_fix:
        parts = []
        if blocking:
            parts.append(f"{', '.join(f.rule_id for f in blocking)} (blocking)")
        if majors:
            parts.append(f"{', '.join(f.rule_id for f in majors)} (major, needs a reviewer)")
        changes.append(OutcomeChange(kind="fix_findings", rule_ids=must_fix, text=f"Fix {' and '.join(parts)}."))
    rejected = p > env.reject.max_risk
    if rejected:
        reasons.append(f"risk {p:.0%} is above reject.max_risk {env.reject.max_risk:.0%}")
    if p > env.approve.max_risk:
        changes.append(OutcomeChange(
            kind="risk", gap=round(p - env.approve.max_risk, 4),
            text=f"Risk {p:.1%} misses approve.max_risk {env.approve.max_risk:.0%} by "
                 f"{(p - env.approve.max_risk) * 100:.1f} points; reduce the drivers listed under risk.",
        ))  # fmt: skip
    if blocking or rejected:
        verdict: Verdict = "no-go"
    else:
        verdict = "go"
    if verdict == "go" and majors:
        verdict = "escalate"
        reasons += [f"{f.rule_id} failed ({f.title}): {f.message}" for f in majors]
    if score is None:
        changes.append(OutcomeChange(
            kind="evidence", text="No rule could judge any evidence, so there is no readiness score; provide test "
            "reports or checks, security scanning and the change.",
        ))  # fmt: skip
        if verdict == "go":
            verdict = "escalate"
            reasons.append("readiness unknown: no rule could judge any evidence")
    elif score < env.approve.min_score:
        need = _smallest_fix_set(findings, set(must_fix), env.approve.min_score)
        changes.append(OutcomeChange(
            kind="score", rule_ids=need, gap=round(env.approve.min_score - score, 1),
            text=f"Readiness {score:.1f} is {env.approve.min_score - score:.1f} below min_score "
                 f"{env.approve.min_score:.0f}" + (f"; fixing {', '.join(need)} would reach it." if need else "."),
        ))  # fmt: skip
        if verdict == "go":
            verdict = "escalate"
            reasons.append(f"readiness {score:.1f} is below min_score {env.approve.min_score:.0f}")
    if conf < env.approve.min_confidence:
        need = _confidence_set(findings, part_read, env.approve.min_confidence)
        ids = [f.rule_id for f in findings if set(f.sources) & set(need) and (f.status in ("unknown", "skipped"))]
        changes.append(OutcomeChange(
            kind="confidence", rule_ids=ids, gap=round(env.approve.min_confidence - conf, 3),
            text=f"Confidence {conf:.0%} is below min_confidence {env.approve.min_confidence:.0%}; make the "
                 f"{', '.join(need) or 'missing'} evidence available.",
        ))  # fmt: skip
        if verdict == "go":
            verdict = "escalate"
            reasons.append(f"confidence {conf:.0%} is below min_confidence {env.approve.min_confidence:.0%}: evidence is missing")
    unknown_blockers = [f for f in findings if f.status == "unknown" and f.severity == "blocker"]
    if unknown_blockers:
        changes.append(OutcomeChange(
            kind="evidence", rule_ids=[f.rule_id for f in unknown_blockers],
            text="Blocking rules could not be evaluated: " + "; ".join(f"{f.rule_id} ({f.message})" for f in unknown_blockers),
        ))  # fmt: skip
        if verdict == "go":
            verdict = "escalate"
            reasons.append("a blocking rule could not be evaluated: " + ", ".join(f.rule_id for f in unknown_blockers))
    if verdict == "go" and p > env.approve.max_risk:
        verdict = "escalate"
        reasons.append(f"risk {p:.0%} is above approve.max_risk {env.approve.max_risk:.0%}")
    if freeze is not None:
        ends = f" until {freeze.ends_at:%Y-%m-%d %H:%M} UTC" if freeze.ends_at else ""
        changes.append(OutcomeChange(kind="freeze", text=f"Deploy after the freeze ends{ends} ({freeze.reason})."))
        if verdict == "go":
            verdict = "escalate"
            reasons.append(f"a deployment freeze is active{ends}: {freeze.reason}")
    if verdict == "go":
        reasons.append(
            f"no blocker failed; risk {p:.0%} <= {env.approve.max_risk:.0%}, readiness {score or 0:.0f} >= "
            f"{env.approve.min_score:.0f}, confidence {conf:.0%} >= {env.approve.min_confidence:.0%}"
        )
    return verdict, reasons, changes


class _NotFullyRead(NamedTuple):
    reasons: list[str]  # why the verdict cannot be go
    fix: str  # the "evidence" change that would make it readable


def _parts_not_fully_read(ev: Evidence, scope: Collection[str] | None) -> list[_NotFullyRead]:
    """List each kind of evidence gonogo could not fully read, with its reasons and the change that fixes it.

    Three kinds: report files that were refused, a change whose history reads failed although its
    comparison was read, and in-scope sources that exist but failed to answer (an error, a refusal, a
    timeout). A source that is not set up is not here: it lowers the confidence instead.
    """
    parts: list[_NotFullyRead] = []
    refused = ev.refused
    if refused:
        names = ", ".join(r.path for r in refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        parts.append(_NotFullyRead(
            [f"{len(refused)} report file(s) could not be read ({names}): missing evidence never approves"],
            f"Fix or remove the report file(s) gonogo could not read ({names}) and re-run: "
            "a report that cannot be read counts as missing evidence.",
        ))  # fmt: skip
    change = ev.change
    if change.availability is Availability.OK and change.unread and (scope is None or "change" in scope):
        parts.append(_NotFullyRead(
            [f"change evidence was read only in part ({why}): unread evidence never approves"
             for why in change.unread],
            "Re-run the job once GitHub answers the change's history reads again (see the reasons above).",
        ))  # fmt: skip
    unread = [(name, part) for name, part in ev.parts().items()
              if part.availability is Availability.UNAVAILABLE and (scope is None or name in scope)]  # fmt: skip
    if unread:
        parts.append(_NotFullyRead(
            [f"{name} evidence could not be read ({part.reason}): unread evidence never approves"
             for name, part in unread],
            f"Make the {', '.join(name for name, _ in unread)} evidence readable again (see the reasons above) "
            "and re-run the job.",
        ))  # fmt: skip
    return parts


def _refuse_go_on_unread_evidence(
    ev: Evidence, verdict: Verdict, reasons: list[str], changes: list[OutcomeChange], scope: Collection[str] | None
) -> Verdict:
    """Turn a go into an escalation when any evidence was not fully read, and say what to fix.

    Unread evidence never approves, whatever the confidence the rest of the evidence leaves.
    """
    parts = _parts_not_fully_read(ev, scope)
    for part in parts:
        reasons.extend(part.reasons)
        changes.append(OutcomeChange(kind="evidence", text=part.fix))
    return "escalate" if parts and verdict == "go" else verdict


def decide(
    policy: Policy, assessment: Assessment, environment: str, now: datetime, waivers: Sequence[Waiver] = (),
    scope: Collection[str] | None = None, track: Mapping[str, TrackRecord] | None = None,
) -> Decision:
    """Decide go / escalate / no-go for one deployment under the policy (``scope``: see evaluate_rules).

    ``track`` is the repository's outcome record per learnable rule in this environment (rules.learning.tally);
    without it nothing is learned.
    """
    env = effective(policy, environment)
    ev = assessment.evidence
    if env.required_checks and not ev.checks.required:
        ev = ev.model_copy(update={"checks": ev.checks.model_copy(update={"required": list(env.required_checks)})})
        assessment = assessment.model_copy(update={"evidence": ev})
    learned = judge(env, track) if track is not None else {}
    findings, applied = evaluate_rules(env, assessment, environment, now, waivers, scope, learned)
    dims = dimension_scores(findings)
    part_read = {name: part_read_share(ev, name) for name in ev.parts()}
    score, conf = readiness(dims), confidence(findings, part_read)
    risk = assessment.risk or estimate_risk(ev)
    freeze = freeze_status(env, assessment, now)
    verdict, reasons, changes = _judge(env, findings, score, conf, risk, freeze, part_read)
    verdict = _refuse_go_on_unread_evidence(ev, verdict, reasons, changes, scope)
    lapsed = lapsed_waivers(env, findings, waivers, environment, ev.sha, now)
    reasons.extend(lapsed_waiver_reason(w, env.waivers.max_lifetime) for w in lapsed)
    for f in findings:
        if f.learned:
            reasons.append(f"{f.rule_id} ({f.title}) is a recommendation in this repository and environment, "
                           f"not a reason to escalate: {learned[f.rule_id].why}")  # fmt: skip
    if first_deployment(ev):
        reasons.append(
            f"{NO_HISTORY}: first deployment to {environment}, so there is no failure rate, pace or earlier release "
            "to compare with; decided on the evidence alone"
        )
    action = _ACTION[verdict]
    if policy.mode == "dry-run":
        reasons.insert(0, f"dry-run mode: gonogo would have decided {verdict} ({_ACTION[verdict]}) but approves")
        action = "approve"
    decision = Decision(
        verdict=verdict, action=action, mode=policy.mode, environment=environment, repository=ev.repository,
        sha=ev.sha, deployment_id=ev.deployment_id, decided_at=_aware(now), readiness_score=score,
        confidence=conf, evidence_read=source_shares(findings, part_read), dimensions=dims, risk=risk, findings=findings,
        blocking=[f.rule_id for f in findings if f.status == "failed" and f.severity == "blocker"],
        reasons=reasons, recommendations=_recommendations(findings), what_would_change=changes if verdict != "go" else [],
        strategy=choose_strategy(assessment, findings, risk, env),
        reviewers=ReviewerSet(users=env.reviewers.users, teams=env.reviewers.teams, four_eyes=env.reviewers.four_eyes),
        waivers=applied, lapsed_waivers=lapsed, freeze=freeze, policy_source=" <- ".join(policy.sources), learning=list(learned.values()),
        evidence=ev,
    )  # fmt: skip
    log.info(
        "decision.made",
        extra={"verdict": verdict, "action": action, "environment": environment, "deployment_id": ev.deployment_id},
    )
    return decision


def decide_invalid_policy(
    errors: PolicyError | Sequence[PolicyIssue | str],
    assessment: Assessment,
    environment: str | None = None,
    now: datetime | None = None,
    waivers: Sequence[Waiver] = (),
    scope: Collection[str] | None = None,
) -> Decision:
    """Escalate (never approve) because the policy is invalid; findings come from the default pack for context."""
    items = errors.errors if isinstance(errors, PolicyError) else list(errors)
    messages = [str(e) for e in items] or ["the policy file is invalid"]
    env_name = environment or assessment.evidence.environment
    base = decide(default_policy(), assessment, env_name, now or assessment.evidence.created_at, waivers, scope)
    reasons = [f"the policy file is invalid ({len(messages)} errors); gonogo will not approve until it is fixed"]
    reasons += [f"under the default pack it would have decided {base.verdict}"]
    change = OutcomeChange(kind="policy", text="Fix the policy file on the default branch: " + "; ".join(messages[:5]))
    return base.model_copy(update={
        "verdict": "escalate", "action": "escalate", "mode": "enforce", "reasons": reasons,
        "what_would_change": [change, *base.what_would_change], "policy_errors": messages,
        "policy_source": "invalid policy (default pack used for findings)",
    })  # fmt: skip


def rule_title(rule_id: str) -> str:
    """Return the title of a rule id (for waiver and escalation messages)."""
    return RULES_BY_ID[rule_id].title
