"""Security rules: vulnerabilities, secrets and code-scanning alerts."""

from __future__ import annotations

from rules.rule import Check, Rule, at_most, failed, passed, skipped, unknown
from rules.severity import RuleSeverity
from rules.types import RuleResult
from scorer.assessment import Assessment
from scorer.evidence import Availability

_MAX_DETAILS = 10
# Points per open finding for the security budget: one critical outweighs many lows.
_BUDGET_POINTS = {"critical": 10, "high": 5, "medium": 2, "low": 1}


def _titles(a: Assessment, severity: str) -> list[str]:
    out = []
    # an alert counted although GitHub shows it closed is named first: the reader would look for it among the open
    findings = sorted(a.evidence.security.findings, key=lambda f: f.note is None)
    for f in findings:
        if f.severity == severity:
            where = f.package or (f"{f.path}:{f.line}" if f.path and f.line else f.path) or ""
            out.append(f"{f.rule_id} {where}".strip() + (f" ({f.note})" if f.note else ""))
    return out[:_MAX_DETAILS]


def _closed_by_deployer(a: Assessment, source: str) -> list[str]:
    return [f"{f.rule_id} {f.package or ''}".strip() + f" ({f.note})" for f in a.evidence.security.findings
            if f.source == source and f.note][:_MAX_DETAILS]  # fmt: skip


def _count_rule(severity: str, label: str) -> Check:
    def check(a: Assessment, limit: float | None) -> RuleResult:
        return at_most(a.evidence.security.count(severity), limit, label, details=_titles(a, severity))

    return check


def _no_secrets(a: Assessment, limit: float | None) -> RuleResult:
    return at_most(a.evidence.security.secrets_open, limit, "open secret-scanning alerts",
                   details=_closed_by_deployer(a, "secret_scanning"))


def _changed_files_clean(a: Assessment, limit: float | None) -> RuleResult:
    changed = {f.path for f in a.evidence.change.files}
    if not changed:
        return skipped("the list of changed files is not known", limit)
    hits = [
        f for f in a.evidence.security.findings
        if f.source in ("code_scanning", "sarif") and f.severity in ("critical", "high") and f.path in changed
    ]  # fmt: skip
    return at_most(
        len(hits), limit, "high or critical code-scanning alerts in changed files",
        details=[f"{f.rule_id} {f.path}:{f.line}" for f in hits[:_MAX_DETAILS]],
    )  # fmt: skip


def _budget(a: Assessment, limit: float | None) -> RuleResult:
    s = a.evidence.security
    points = sum(s.count(sev) * pts for sev, pts in _BUDGET_POINTS.items())
    return at_most(points, limit, "security debt points (10/critical, 5/high, 2/medium, 1/low)")


def _scanning_enabled(a: Assessment, limit: float | None) -> RuleResult:
    s = a.evidence.security
    if s.availability == Availability.NOT_CONFIGURED:
        return failed(f"no security scanning is configured ({s.reason})", value=0)
    if s.availability == Availability.UNAVAILABLE:
        return unknown(f"security evidence could not be read: {s.reason}")
    broken = sorted(name for name, av in s.sources.items() if av in (Availability.UNAVAILABLE, Availability.INCOMPLETE))
    if broken or s.availability == Availability.INCOMPLETE:
        return unknown(f"security sources could not be read completely: {', '.join(broken) or s.reason}")
    ok = sorted(name for name, av in s.sources.items() if av == Availability.OK)
    return passed(f"security scanning read from {', '.join(ok) if ok else 'the reported sources'}", value=len(ok) or 1)


def _rule(
    id_: str, title: str, severity: RuleSeverity, threshold: float | None, why: str, fix: str, check: Check,
    parts: tuple[str, ...] = ("security",), skip: bool = True, about: tuple[str, ...] = (), scored: bool = True,
) -> Rule:
    return Rule(
        id=id_, dimension="security", title=title, severity=severity, why=why, fix=fix, check=check,
        parts=parts, threshold=threshold, skip_when_not_configured=skip, about=about, scored=scored,
        # every security rule but GNG-SEC-008 counts findings: more evidence can only add to them
        failure_stands_on_partial=bool(parts),
    )  # fmt: skip


RULES: list[Rule] = [
    _rule(
        "GNG-SEC-001", "Ensure no critical vulnerabilities are open", "blocker", 0,
        "A critical vulnerability is usually remotely exploitable; deploying it exposes production.",
        "Upgrade or patch the affected packages (see the findings), or waive with a dated reason if not exploitable.",
        _count_rule("critical", "open critical vulnerabilities"),
    ),
    _rule(
        "GNG-SEC-002", "Ensure no high-severity vulnerabilities are open", "major", 0,
        "High-severity findings are the next most likely path to a breach.",
        "Upgrade the affected dependencies or fix the flagged code; dismiss false positives in the scanner.",
        _count_rule("high", "open high-severity vulnerabilities"),
    ),
    _rule(
        "GNG-SEC-003", "Ensure no secrets are exposed", "blocker", 0,
        "A leaked credential gives an attacker access whatever the code quality.",
        "Revoke and rotate the leaked secret first, then remove it from the code and close the alert.",
        _no_secrets,
    ),
    _rule(
        "GNG-SEC-004", "Ensure medium-severity vulnerabilities stay few", "minor", 10,
        "Medium findings accumulate into real exposure when nobody triages them.",
        "Triage the medium findings: fix, upgrade, or dismiss with a reason.",
        _count_rule("medium", "open medium-severity vulnerabilities"),
    ),
    _rule(
        "GNG-SEC-005", "Ensure changed files carry no high or critical code-scanning alerts", "major", 0,
        "An alert in a file this change touches is most likely introduced or made reachable by it.",
        "Fix the alerts in the changed files before deploying; they are annotated on the lines.",
        _changed_files_clean, parts=("security", "change"),
    ),
    _rule(
        "GNG-SEC-006", "Ensure the security debt stays within budget", "minor", 50,
        "Many small findings together are a large attack surface.",
        "Reduce open findings, starting with the most severe ones.",
        _budget,
    ),
    _rule(
        "GNG-SEC-007", "Ensure low-severity findings stay few", "minor", 50,
        "Unreviewed low findings hide the ones that matter.",
        "Triage low findings in bulk; dismiss what does not apply.",
        _count_rule("low", "open low-severity findings"),
    ),
    _rule(
        "GNG-SEC-008", "Ensure security scanning is enabled and readable", "minor", None,
        "Without scanning results gonogo cannot tell a safe dependency tree from a vulnerable one.",
        "Enable code scanning or Dependabot alerts, or upload SARIF/Trivy reports as artifacts; "
        "grant the app security-events read permission.",
        _scanning_enabled, parts=(), skip=False, about=("security",), scored=False,
    ),
]
