"""The evidence model: everything gonogo knows about one deployment, with where it came from.

Every part carries its availability (``ok``, ``incomplete``, ``not_configured``, ``unavailable``)
and the reason, so a missing source is never mistaken for a clean one. A part fed by report files
also lists the files it refused; files no parser understood are listed on the ``Evidence`` itself.
``Evidence`` round-trips through JSON losslessly and flattens to the deployment-history columns of
docs/history.md.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Availability(StrEnum):
    """Whether a source could be read."""

    OK = "ok"
    NOT_CONFIGURED = "not_configured"  # the repository does not use this source
    UNAVAILABLE = "unavailable"  # it exists but could not be read (error, timeout, too large)
    # some of its files were read and others refused: what was read is only part of the evidence
    INCOMPLETE = "incomplete"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class Provenance(_Model):
    """Where a value came from: an API route, an artifact file, gonogo's own history."""

    source: str
    detail: str = ""
    url: str | None = None


class RefusedFile(_Model):
    """A file that looked like a report (by content or name) but could not be read completely."""

    path: str  # "artifact:member" for a workflow artifact ("test-results:junit/TEST-api.xml"), else the file's path
    kind: str  # the report kind it was taken for (junit, sarif, ...), or "unknown" when it could not be opened to tell
    reason: str  # one line: why it was refused and what to do


class NotUnderstoodFile(_Model):
    """A file present in the artifacts that no parser reads: listed so nothing is dropped without a word."""

    path: str
    detail: str  # what it looks like: "JSON document", "XML document <foo>", "text", "binary"


class Part(_Model):
    """Base for one evidence source."""

    availability: Availability = Availability.UNAVAILABLE
    reason: str = "not collected"
    provenance: list[Provenance] = Field(default_factory=list)
    refused: list[RefusedFile] = Field(default_factory=list)  # report files of this source that were refused

    @property
    def ok(self) -> bool:
        """Whether the source was read completely."""
        return self.availability is Availability.OK

    @property
    def has_data(self) -> bool:
        """Whether some of the source was read (completely or not): its values are at least a lower bound."""
        return self.availability in (Availability.OK, Availability.INCOMPLETE)

    @property
    def complete(self) -> bool:
        """Whether nothing of this source was refused."""
        return self.availability is not Availability.INCOMPLETE and not self.refused


# --- checks -------------------------------------------------------------------------------


class CheckResult(_Model):
    """One check run or commit status, the latest one for its name."""

    name: str
    kind: Literal["check_run", "status"] = "check_run"
    status: str  # queued | in_progress | completed | pending (statuses map to these)
    conclusion: str | None = None  # success | failure | neutral | cancelled | skipped | timed_out | action_required | stale | error
    url: str | None = None
    duration_s: float | None = None
    attempts: int = 1  # >1 when the same name ran more than once on the sha (re-run)
    app: str | None = None  # the app that reported a check run; the account that posted a status

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        return self.completed and self.conclusion in {"failure", "cancelled", "timed_out", "error", "action_required", "stale"}

    @property
    def passed(self) -> bool:
        """Whether it ran and succeeded."""
        return self.completed and self.conclusion == "success"

    @property
    def not_run(self) -> bool:
        """Whether it finished without a verdict on the commit: ``skipped`` (a job whose condition was false),
        ``neutral`` or no conclusion at all. Not a failure, and not a pass either: it tested nothing."""
        return self.completed and not self.failed and not self.passed


class ChecksPart(Part):
    checks: list[CheckResult] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)  # names the policy requires

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    @property
    def pending(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.completed]

    @property
    def rerun(self) -> list[CheckResult]:
        return [c for c in self.checks if c.attempts > 1]


# --- tests --------------------------------------------------------------------------------


class TestCase(_Model):
    __test__ = False  # not a pytest class

    name: str
    classname: str = ""
    file: str | None = None
    line: int | None = None
    message: str = ""
    outcome: Literal["failed", "errored", "flaky", "skipped", "passed"] = "failed"
    # where a failing test also passed ("fails on test-results-windows, passes on test-results-linux"), or
    # where a flaky one failed and passed on its retry; empty when it failed everywhere it ran
    where: str = ""


class TestsPart(Part):
    __test__ = False

    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    failures: list[TestCase] = Field(default_factory=list)  # failed and errored cases (capped)
    flaky: list[TestCase] = Field(default_factory=list)
    files: int = 0  # report files merged


# --- coverage -----------------------------------------------------------------------------


class CoveragePart(Part):
    line_rate: float | None = None  # 0..1
    branch_rate: float | None = None  # 0..1
    lines_valid: int | None = None
    lines_covered: int | None = None
    baseline_line_rate: float | None = None  # last successful deployment of the environment
    format: str | None = None  # cobertura | lcov | coverage.py | jacoco | clover | opencover

    @property
    def delta(self) -> float | None:
        if self.line_rate is None or self.baseline_line_rate is None:
            return None
        return self.line_rate - self.baseline_line_rate


# --- security -----------------------------------------------------------------------------

Severity = Literal["critical", "high", "medium", "low", "note"]


class SecurityFinding(_Model):
    source: Literal["code_scanning", "sarif", "dependabot", "secret_scanning", "trivy"]
    rule_id: str
    severity: Severity
    title: str = ""
    path: str | None = None
    line: int | None = None
    url: str | None = None
    package: str | None = None
    # why an alert GitHub shows as closed still counts (dismissed by the deployer of this deployment); None: open
    note: str | None = None

    @property
    def key(self) -> tuple[str, str | None, int | None, str | None]:
        """Identity used for deduplication: rule and location (or package)."""
        return (self.rule_id, self.path, self.line, self.package)


class SecurityPart(Part):
    findings: list[SecurityFinding] = Field(default_factory=list)  # deduplicated (capped)
    counts: dict[str, int] = Field(default_factory=dict)  # severity -> count (not capped)
    secrets_open: int = 0
    sources: dict[str, Availability] = Field(default_factory=dict)  # per sub-source availability

    def count(self, severity: str) -> int:
        return self.counts.get(severity, 0)


# --- performance --------------------------------------------------------------------------


class Transaction(_Model):
    name: str
    samples: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    error_rate: float | None = None  # 0..1
    throughput_rps: float | None = None
    baseline_p95_ms: float | None = None
    regression_pct: float | None = None  # (p95 - baseline) / baseline * 100
    significant: bool | None = None  # noise-aware test said the change is real


class PerformancePart(Part):
    tool: str | None = None  # jmeter | k6 | locust
    overall: Transaction | None = None
    transactions: list[Transaction] = Field(default_factory=list)
    baseline_sha: str | None = None
    method: str | None = None  # mann-whitney | relative-threshold


# --- change -------------------------------------------------------------------------------


class ChangedFile(_Model):
    path: str
    status: str = "modified"
    additions: int = 0
    deletions: int = 0


class ChangePart(Part):
    base_sha: str | None = None
    # what the change is measured from: last_deployment (the last successful one), or for a first deployment
    # merge_base (with the default branch), release_tag (the previous release) or parent_commit
    base_source: str | None = None
    base_label: str | None = None  # the base in words, e.g. "the previous release v1.4.0"
    files_truncated: bool = False  # GitHub listed only part of the files: counts taken from them are lower bounds
    commits: int | None = None
    files_changed: int | None = None
    additions: int | None = None
    deletions: int | None = None
    subsystems: int | None = None
    entropy: float | None = None
    authors: int | None = None
    author_experience: int | None = None
    directories: int | None = None  # distinct directories holding the changed files
    fix_commits: int | None = None  # commits whose message says they fix something
    # History of the touched files before the base (Kamei's ndev, age, nuc), from the commits of each changed
    # file: unknown when the change touches more files than gonogo reads the history of, or a read failed.
    file_developers: int | None = None  # distinct authors of the earlier commits to the changed files
    file_age_days: float | None = None  # mean days since each changed file was last changed before this change
    file_prior_changes: int | None = None  # distinct earlier commits that touched the changed files
    lines_before: int | None = None  # lines of the changed files before the change (Kamei's lt)
    # The main author's experience (Kamei's rexp, sexp): recent, weighted by age, and in the touched subsystems
    author_recent_experience: float | None = None  # earlier commits weighted 1/(1 + years ago)
    author_subsystem_experience: int | None = None  # earlier commits in the subsystems the change touches
    has_migration: bool | None = None
    # the oldest commit of the change (committer date): where DORA's lead time for changes starts
    first_commit_at: datetime | None = None
    hotspots: list[str] = Field(default_factory=list)
    files: list[ChangedFile] = Field(default_factory=list)  # capped
    # reads of the change's history that failed although the comparison itself was read (the author's
    # experience, the files' earlier commits): the figures they feed are unknown and the deployment cannot be
    # approved on them; a history left unread on purpose (over gonogo's call caps) is not listed here
    unread: list[str] = Field(default_factory=list)


# --- operational --------------------------------------------------------------------------


class OperationalPart(Part):
    hours_since_last_deploy: float | None = None
    deploys_last_24h: int | None = None
    env_failure_rate_30d: float | None = None
    hour_utc: int | None = None
    weekday: int | None = None  # 0 = Monday
    freeze_active: bool = False
    freeze_reason: str | None = None


# --- the whole ----------------------------------------------------------------------------

PART_NAMES = ("checks", "tests", "coverage", "security", "performance", "change", "operational")


class Evidence(_Model):
    """All evidence for one deployment decision."""

    deployment_id: str
    repository: str
    environment: str
    sha: str
    ref: str | None = None
    created_at: datetime
    checks: ChecksPart = Field(default_factory=ChecksPart)
    tests: TestsPart = Field(default_factory=TestsPart)
    coverage: CoveragePart = Field(default_factory=CoveragePart)
    security: SecurityPart = Field(default_factory=SecurityPart)
    performance: PerformancePart = Field(default_factory=PerformancePart)
    change: ChangePart = Field(default_factory=ChangePart)
    operational: OperationalPart = Field(default_factory=OperationalPart)
    not_understood: list[NotUnderstoodFile] = Field(default_factory=list)  # capped; see not_understood_total
    not_understood_total: int = 0  # files no parser reads, including those beyond the list's cap

    def parts(self) -> dict[str, Part]:
        return {name: getattr(self, name) for name in PART_NAMES}

    @property
    def refused(self) -> list[RefusedFile]:
        """Every refused report file across the parts, each once (an archive may concern several parts)."""
        seen: set[tuple[str, str]] = set()
        out: list[RefusedFile] = []
        for part in self.parts().values():
            for r in part.refused:
                if (r.path, r.reason) not in seen:
                    seen.add((r.path, r.reason))
                    out.append(r)
        return out

    @property
    def complete(self) -> bool:
        """Whether no report file was refused by any part."""
        return all(p.complete for p in self.parts().values())

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Evidence:
        return cls.model_validate_json(text)

    def to_history_row(self) -> dict[str, Any]:
        """Flatten to the history columns of docs/history.md; unknown values are None."""
        ch, te, co, se, pe, op = self.change, self.tests, self.coverage, self.security, self.performance, self.operational
        checks_ok = self.checks.ok
        overall = pe.overall if pe.ok else None
        created = self.created_at
        return {
            "deployment_id": self.deployment_id,
            "repository": self.repository,
            "environment": self.environment,
            "sha": self.sha,
            "created_at": created.isoformat(),
            "commits": ch.commits if ch.ok else None,
            "files_changed": ch.files_changed if ch.ok else None,
            "additions": ch.additions if ch.ok else None,
            "deletions": ch.deletions if ch.ok else None,
            "subsystems": ch.subsystems if ch.ok else None,
            "entropy": ch.entropy if ch.ok else None,
            "authors": ch.authors if ch.ok else None,
            "author_experience": ch.author_experience if ch.ok else None,
            "directories": ch.directories if ch.ok else None,
            "fix_commits": ch.fix_commits if ch.ok else None,
            "file_developers": ch.file_developers if ch.ok else None,
            "file_age_days": ch.file_age_days if ch.ok else None,
            "file_prior_changes": ch.file_prior_changes if ch.ok else None,
            "lines_before": ch.lines_before if ch.ok else None,
            "author_recent_experience": ch.author_recent_experience if ch.ok else None,
            "author_subsystem_experience": ch.author_subsystem_experience if ch.ok else None,
            "hours_since_last_deploy": op.hours_since_last_deploy if op.ok else None,
            "checks_total": len(self.checks.checks) if checks_ok else None,
            "checks_failed": len(self.checks.failed) if checks_ok else None,
            "tests_total": te.total if te.ok else None,
            "tests_failed": (te.failed + te.errored) if te.ok else None,
            "tests_skipped": te.skipped if te.ok else None,
            "flaky_tests": len(te.flaky) if te.ok else None,
            "coverage": co.line_rate if co.ok else None,
            "coverage_delta": co.delta if co.ok else None,
            "vulns_critical": se.count("critical") if se.ok else None,
            "vulns_high": se.count("high") if se.ok else None,
            "vulns_medium": se.count("medium") if se.ok else None,
            "vulns_low": se.count("low") if se.ok else None,
            "secrets_open": se.secrets_open if se.ok else None,
            "p95_latency_ms": overall.p95_ms if overall else None,
            "p95_regression_pct": overall.regression_pct if overall else None,
            "error_rate": overall.error_rate if overall else None,
            "env_failure_rate_30d": op.env_failure_rate_30d if op.ok else None,
            "deploys_last_24h": op.deploys_last_24h if op.ok else None,
            "hour_utc": op.hour_utc if op.hour_utc is not None else created.hour,
            "weekday": op.weekday if op.weekday is not None else created.weekday(),
            "has_migration": ch.has_migration if ch.ok else None,
            "outcome": None,
            # not a model feature (HISTORY_COLUMNS leaves it out); the insights' lead time reads it
            "first_commit_at": ch.first_commit_at.isoformat() if ch.ok and ch.first_commit_at else None,
        }


HISTORY_COLUMNS: tuple[str, ...] = (
    "deployment_id", "repository", "environment", "sha", "created_at",
    "commits", "files_changed", "additions", "deletions", "subsystems", "entropy",
    "authors", "author_experience", "hours_since_last_deploy",
    "checks_total", "checks_failed", "tests_total", "tests_failed", "tests_skipped", "flaky_tests",
    "coverage", "coverage_delta", "vulns_critical", "vulns_high", "vulns_medium", "vulns_low",
    "secrets_open", "p95_latency_ms", "p95_regression_pct", "error_rate",
    "env_failure_rate_30d", "deploys_last_24h", "hour_utc", "weekday", "has_migration", "outcome",
    "outcome_at", "directories", "fix_commits",
    "file_developers", "file_age_days", "file_prior_changes", "author_recent_experience", "author_subsystem_experience",
    "lines_before",
)  # fmt: skip

OUTCOMES = ("success", "failure", "rollback", "incident")
FAILED_OUTCOMES = frozenset({"failure", "rollback", "incident"})


_FIX_WORDS = re.compile(r"\b(fix(es|ed|ing)?|bug(s|fix)?|hotfix|defect|patch(es|ed)?|regression)\b", re.IGNORECASE)


def is_fix_message(message: str | None) -> bool:
    """Whether a commit message says the commit fixes something (a defect-fixing change is riskier)."""
    return bool(message and _FIX_WORDS.search(message))


def change_directories(paths: list[str]) -> int:
    """Distinct directories holding the changed files (the repository root counts as one)."""
    return len({p.rsplit("/", 1)[0] if "/" in p else "." for p in paths})


def change_entropy(line_counts: list[int]) -> float:
    """Normalised Shannon entropy (0..1) of how a change's lines spread over its files."""
    total = sum(c for c in line_counts if c > 0)
    n = sum(1 for c in line_counts if c > 0)
    if total == 0 or n <= 1:
        return 0.0
    h = -sum((c / total) * math.log2(c / total) for c in line_counts if c > 0)
    return h / math.log2(n)
