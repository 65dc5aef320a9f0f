"""Stream SARIF 2.1.0 and Trivy JSON reports into deduplicated security findings counted by severity."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson

from scorer.evidence import SecurityFinding, Severity
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline

Stream = BinaryIO | CappedReader
Opener = Callable[[], Stream]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "note")
_LEVELS: dict[str, Severity] = {"error": "high", "warning": "medium", "note": "note", "none": "note"}
_TRIVY: dict[str, Severity] = {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}
# results of these kinds are not problems (SARIF 3.27.9): a passed check, an inapplicable rule, a remark
_NOT_A_PROBLEM = frozenset({"pass", "notApplicable", "informational"})
TITLE_CHARS = 200
Key = tuple[str, str | None, int | None, str | None]


def cvss_severity(score: float) -> Severity:
    """Map a CVSS-style security-severity score to a severity bucket."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "note"


@dataclass
class SecurityTally:
    """Findings of one or more reports, deduplicated by rule and location (or package)."""

    limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    findings: list[SecurityFinding] = field(default_factory=list)  # first max_findings, worst first at the end
    keys: dict[Key, str] = field(default_factory=dict)
    seen: int = 0  # results read
    excluded: int = 0  # not problems: passed, suppressed, fixed (baseline absent), PASS misconfigurations
    duplicates: int = 0
    untracked: int = 0  # beyond max_tracked_findings: counted without deduplication
    files: int = 0

    def add(self, finding: tuple[str, Severity, str, str | None, int | None, str | None, str | None, str]) -> None:
        """Count one finding given as (rule_id, severity, title, path, line, url, package, source)."""
        rule_id, severity, title, path, line, url, package, source = finding
        key: Key = (rule_id, path, line, package)
        if key in self.keys:
            self.duplicates += 1
            return
        if len(self.keys) < self.limits.max_tracked_findings:
            self.keys[key] = severity
        else:
            self.untracked += 1
        self.counts[severity] += 1
        if len(self.findings) < self.limits.max_findings:
            self.findings.append(SecurityFinding(
                source=source,  # type: ignore[arg-type]
                rule_id=rule_id, severity=severity, title=title[:TITLE_CHARS], path=path, line=line,
                url=url, package=package))

    def merge(self, other: SecurityTally) -> None:
        """Fold another file's findings into this one, deduplicating across files."""
        self.seen += other.seen
        self.excluded += other.excluded
        self.duplicates += other.duplicates
        self.untracked += other.untracked
        self.files += other.files
        kept = {f.key: f for f in other.findings}
        for key, severity in other.keys.items():
            if key in self.keys:
                self.duplicates += 1
                continue
            if len(self.keys) < self.limits.max_tracked_findings:
                self.keys[key] = severity
            self.counts[severity] += 1
            found = kept.get(key)
            if found is not None and len(self.findings) < self.limits.max_findings:
                self.findings.append(found)
        for severity, n in other.counts.items():
            # findings the other file could not track are counted as they are
            tracked = sum(1 for s in other.keys.values() if s == severity) if other.untracked else n
            self.counts[severity] += n - tracked

    def sorted_findings(self) -> list[SecurityFinding]:
        """Kept findings, most severe first."""
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.findings, key=lambda f: order[f.severity])


def _text(obj: Any) -> str:
    if isinstance(obj, dict):
        text = obj.get("text") or obj.get("markdown") or ""
        return text if isinstance(text, str) else ""
    return ""


def _score(props: Any) -> float | None:
    if not isinstance(props, dict):
        return None
    raw = props.get("security-severity")
    if raw is None:
        return None
    try:
        return float(str(raw))
    except ValueError:
        return None


class _Rules:
    """Rule metadata of one run, by id and by index into the driver's rules."""

    def __init__(self, tool: Any) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_index: list[dict[str, Any]] = []
        if not isinstance(tool, dict):
            return
        components = [tool.get("driver")] + list(tool.get("extensions") or [])
        for n, component in enumerate(components):
            if not isinstance(component, dict):
                continue
            for rule in component.get("rules") or []:
                if not isinstance(rule, dict):
                    continue
                if n == 0:
                    self.by_index.append(rule)
                rule_id = rule.get("id")
                if isinstance(rule_id, str):
                    self.by_id.setdefault(rule_id, rule)

    def find(self, result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rule_ref: dict[str, Any] = result["rule"] if isinstance(result.get("rule"), dict) else {}
        rule_id = result.get("ruleId") or rule_ref.get("id")
        index = result.get("ruleIndex", rule_ref.get("index"))
        rule: dict[str, Any] | None = None
        if isinstance(rule_id, str):
            rule = self.by_id.get(rule_id) or self.by_id.get(rule_id.split("/")[0])
        if rule is None and isinstance(index, int) and 0 <= index < len(self.by_index):
            rule = self.by_index[index]
        if not isinstance(rule_id, str):
            rule_id = rule["id"] if rule and isinstance(rule.get("id"), str) else "unknown"
        return str(rule_id), rule or {}


def _sarif_finding(result: Any, rules: _Rules, tally: SecurityTally) -> None:
    tally.seen += 1
    if not isinstance(result, dict):
        tally.excluded += 1
        return
    if result.get("kind", "fail") in _NOT_A_PROBLEM or result.get("baselineState") == "absent":
        tally.excluded += 1
        return
    suppressions = result.get("suppressions")
    if isinstance(suppressions, list) and any(
        isinstance(s, dict) and s.get("status", "accepted") == "accepted" for s in suppressions
    ):
        tally.excluded += 1
        return
    rule_id, rule = rules.find(result)
    score = _score(result.get("properties"))
    if score is None:
        score = _score(rule.get("properties"))
    if score is not None:
        severity = cvss_severity(score)
    else:
        level = result.get("level")
        if not isinstance(level, str):
            config = rule.get("defaultConfiguration")
            level = config.get("level") if isinstance(config, dict) else None
        severity = _LEVELS.get(level if isinstance(level, str) else "warning", "medium")
    path: str | None = None
    line: int | None = None
    locations = result.get("locations")
    if isinstance(locations, list) and locations and isinstance(locations[0], dict):
        physical = locations[0].get("physicalLocation")
        if isinstance(physical, dict):
            artifact = physical.get("artifactLocation")
            if isinstance(artifact, dict) and isinstance(artifact.get("uri"), str):
                path = artifact["uri"]
            region = physical.get("region")
            if isinstance(region, dict) and isinstance(region.get("startLine"), int):
                line = region["startLine"]
    title = _text(rule.get("shortDescription")) or (rule.get("name") if isinstance(rule.get("name"), str) else "") \
        or _text(result.get("message"))
    url = rule.get("helpUri") if isinstance(rule.get("helpUri"), str) else None
    tally.add((rule_id, severity, title, path, line, url, None, "sarif"))


def _items(opener: Opener, prefix: str, what: str, deadline: Deadline) -> Iterator[Any]:
    with opener() as stream:
        try:
            for n, item in enumerate(ijson.items(stream, prefix, use_float=True)):
                if n % 2048 == 0:
                    deadline.check()
                yield item
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc


def _has_runs(opener: Opener, what: str, deadline: Deadline) -> bool:
    with opener() as stream:
        try:
            for n, (prefix, event, _value) in enumerate(ijson.parse(stream)):
                if prefix == "runs" and event == "start_array":
                    return True
                if prefix == "runs" and event == "null":
                    raise ArtifactRejected(
                        f"{what} has \"runs\": null, meaning the analysis tool failed before it could run"
                    )
                if n % 65536 == 0:
                    deadline.check()
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    return False


def parse_sarif(opener: Opener, what: str, limits: ArtifactLimits | None = None,
                deadline: Deadline | None = None) -> SecurityTally:
    """Parse a SARIF 2.1.0 log in two streaming passes (tools, then results); never builds the DOM."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    tally = SecurityTally(limits=lim, files=1)
    tools = list(_items(opener, "runs.item.tool", what, dl))
    for ok in _items(opener, "runs.item.invocations.item.executionSuccessful", what, dl):
        if ok is False:
            # a crashed analysis is not a clean one: its findings are incomplete
            raise ArtifactRejected(
                f"{what} records a tool invocation with executionSuccessful=false; the analysis did not complete"
            )
    if not tools:
        if not _has_runs(opener, what, dl):
            raise ArtifactRejected(f"{what} has no 'runs' array; not a SARIF 2.1.0 log")
        return tally  # runs without a tool and without results: nothing to report
    if len(tools) == 1:
        rules = _Rules(tools[0])
        for result in _items(opener, "runs.item.results.item", what, dl):
            _sarif_finding(result, rules, tally)
        return tally
    # several runs: follow run boundaries in the event stream so each result meets its own rules
    all_rules = [_Rules(t) for t in tools]
    run = [-1]
    with opener() as stream:
        def events() -> Iterator[tuple[str, str, Any]]:
            for n, event in enumerate(ijson.parse(stream, use_float=True)):
                if event[0] == "runs.item" and event[1] == "start_map":
                    run[0] += 1
                if n % 65536 == 0:
                    dl.check()
                yield event

        try:
            for result in ijson.items(events(), "runs.item.results.item"):
                index = run[0]
                _sarif_finding(result, all_rules[index] if 0 <= index < len(all_rules) else _Rules(None), tally)
        except ijson.JSONError as exc:
            raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    return tally


def parse_trivy(opener: Opener, what: str, limits: ArtifactLimits | None = None,
                deadline: Deadline | None = None) -> SecurityTally:
    """Parse a Trivy JSON report (SchemaVersion 2): vulnerabilities, failed misconfigurations, secrets."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    version = next(_items(opener, "SchemaVersion", what, dl), None)
    if version != 2:
        raise ArtifactRejected(f"{what} has SchemaVersion {version!r}; only Trivy JSON SchemaVersion 2 is supported")
    tally = SecurityTally(limits=lim, files=1)
    for result in _items(opener, "Results.item", what, dl):
        if not isinstance(result, dict):
            continue
        target = result.get("Target") if isinstance(result.get("Target"), str) else None
        for vuln in result.get("Vulnerabilities") or []:
            if not isinstance(vuln, dict):
                continue
            tally.seen += 1
            package = vuln.get("PkgName")
            if package and vuln.get("InstalledVersion"):
                package = f"{package}@{vuln['InstalledVersion']}"
            tally.add((str(vuln.get("VulnerabilityID") or "unknown"), _trivy_severity(vuln.get("Severity")),
                       str(vuln.get("Title") or ""), vuln.get("PkgPath") or target, None,
                       vuln.get("PrimaryURL") if isinstance(vuln.get("PrimaryURL"), str) else None,
                       package if isinstance(package, str) else None, "trivy"))
        for misconf in result.get("Misconfigurations") or []:
            if not isinstance(misconf, dict):
                continue
            tally.seen += 1
            if misconf.get("Status", "FAIL") != "FAIL":
                tally.excluded += 1
                continue
            cause: dict[str, Any] = misconf["CauseMetadata"] if isinstance(misconf.get("CauseMetadata"), dict) else {}
            line = cause.get("StartLine") if isinstance(cause.get("StartLine"), int) else None
            tally.add((str(misconf.get("AVDID") or misconf.get("ID") or "unknown"),
                       _trivy_severity(misconf.get("Severity")), str(misconf.get("Title") or ""), target, line,
                       misconf.get("PrimaryURL") if isinstance(misconf.get("PrimaryURL"), str) else None,
                       None, "trivy"))
        for secret in result.get("Secrets") or []:
            if not isinstance(secret, dict):
                continue
            tally.seen += 1
            line = secret.get("StartLine") if isinstance(secret.get("StartLine"), int) else None
            tally.add((str(secret.get("RuleID") or "secret"), _trivy_severity(secret.get("Severity")),
                       str(secret.get("Title") or "secret"), target, line, None, None, "trivy"))
    return tally


def _trivy_severity(value: Any) -> Severity:
    # UNKNOWN means the database has no score yet: still a vulnerability, so it is not dropped to "note"
    return _TRIVY.get(str(value).upper(), "low")
