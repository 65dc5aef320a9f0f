"""Parse untrusted CI artifacts (test, coverage, security and load-test reports) into Evidence parts.

Pure: no network, no database. Every hostile or broken file becomes a one-line entry in
``ArtifactResults.problems``; only programming errors propagate.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from scorer.evidence import (
    Availability,
    CoveragePart,
    PerformancePart,
    Provenance,
    SecurityFinding,
    SecurityPart,
    TestsPart,
)
from scorer.parsers.coverage_reports import COVERAGE_PARSERS, CoverageReport, merge_coverage
from scorer.parsers.junit import TestTally, parse_test_report
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, Deadline
from scorer.parsers.performance import (
    PERFORMANCE_PARSERS,
    PerfBaseline,
    TransactionBaseline,
    compare_performance,
    merge_performance,
)
from scorer.parsers.safezip import ArtifactFile, iter_dir_files, iter_zip_members
from scorer.parsers.security import SecurityTally, parse_sarif, parse_trivy
from scorer.parsers.sniff import (
    COVERAGE_KINDS,
    PERFORMANCE_KINDS,
    SECURITY_KINDS,
    TEST_KINDS,
    ArtifactGlobs,
    classify,
)

__all__ = [
    "ArtifactFile", "ArtifactGlobs", "ArtifactLimits", "ArtifactRejected", "ArtifactResults", "PerfBaseline",
    "TransactionBaseline", "classify", "compare_performance", "iter_dir_files", "iter_zip_members",
    "parse_artifacts",
]  # fmt: skip

log = logging.getLogger(__name__)

# what can go wrong while reading an untrusted file; anything else is a bug and propagates
_READ_ERRORS = (ArtifactRejected, zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeError, RecursionError)

_GROUP_NOUN = {
    "tests": "JUnit / xUnit / TRX test reports",
    "coverage": "coverage reports (Cobertura, JaCoCo, Clover, OpenCover, lcov, coverage.py)",
    "security": "SARIF or Trivy reports",
    "performance": "load-test results (JMeter, k6, Locust)",
}


def _group(kind: str) -> str:
    if kind in TEST_KINDS:
        return "tests"
    if kind in COVERAGE_KINDS:
        return "coverage"
    if kind in SECURITY_KINDS:
        return "security"
    if kind in PERFORMANCE_KINDS:
        return "performance"
    raise ValueError(f"unknown report kind {kind!r}")


@dataclass
class ArtifactResults:
    """Evidence parts read from a set of artifact files, and what could not be read."""

    tests: TestsPart
    coverage: CoveragePart
    security: SecurityPart  # sarif + trivy only; collectors merge code-scanning/Dependabot alerts in
    security_findings: list[SecurityFinding]  # deduplicated, capped at limits.max_findings, worst first
    performance: PerformancePart
    perf_samples: PerfBaseline | None  # the compact baseline form to store for the next comparison
    problems: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # file label -> detected kind


def _availability(group: str, ok: list[str], rejected: list[str], unread: list[str]) -> tuple[Availability, str] | None:
    """Return (availability, reason) when the group did not parse anything, else None."""
    if ok:
        return None
    noun = _GROUP_NOUN[group]
    if rejected:
        return Availability.UNAVAILABLE, f"all {len(rejected)} {noun} were rejected: " + "; ".join(rejected[:3])
    if unread:
        return Availability.UNAVAILABLE, (
            f"no {noun} found, but {len(unread)} artifact(s) could not be read: " + "; ".join(unread[:3]))
    return Availability.NOT_CONFIGURED, f"no {noun} found in artifacts"


def parse_artifacts(files: Iterable[ArtifactFile], limits: ArtifactLimits | None = None,
                    globs: ArtifactGlobs | None = None) -> ArtifactResults:
    """Sniff and parse every file, merge per kind, and build the Evidence parts."""
    lim = limits or ArtifactLimits()
    glb = globs or ArtifactGlobs()
    tests = TestTally(limits=lim)
    coverage: list[CoverageReport] = []
    security = SecurityTally(limits=lim)
    security_sources: dict[str, Availability] = {}
    perf_runs: list[tuple[str, PerfBaseline]] = []
    ok: dict[str, list[str]] = {g: [] for g in _GROUP_NOUN}
    rejected: dict[str, list[str]] = {g: [] for g in _GROUP_NOUN}
    unread: list[str] = []
    problems: list[str] = []
    kinds: dict[str, str] = {}

    for file in files:
        label = file.label
        if file.rejected is not None:
            problems.append(f"{label}: {file.rejected}")
            unread.append(file.rejected)
            continue
        if glb.ignored(file.name):
            continue
        try:
            kind = classify(file.name, file.head(lim.sniff_bytes), glb)
        except _READ_ERRORS as exc:
            problems.append(f"{label}: could not be read ({exc})")
            unread.append(f"{label}: {exc}")
            continue
        if kind is None:
            continue
        kinds[label] = kind
        group = _group(kind)
        deadline = Deadline(lim.max_seconds_per_file, label)
        try:
            if group == "tests":
                with file.open() as stream:
                    tests.merge(parse_test_report(stream, label, lim, deadline))
            elif group == "coverage":
                with file.open() as stream:
                    coverage.append(COVERAGE_PARSERS[kind](stream, label, lim, deadline))
            elif group == "security":
                parse = parse_sarif if kind == "sarif" else parse_trivy
                security.merge(parse(file.open, label, lim, deadline))
                security_sources[kind] = Availability.OK
            else:
                with file.open() as stream:
                    perf_runs.append((label, PERFORMANCE_PARSERS[kind](stream, label, lim, deadline)))
        except _READ_ERRORS as exc:
            reason = str(exc) if isinstance(exc, ArtifactRejected) else f"{label}: {type(exc).__name__}: {exc}"
            log.info("artifact.rejected", extra={"file": label, "kind": kind, "reason": reason})
            problems.append(f"{label} ({kind}): {reason}" if label not in reason else reason)
            rejected[group].append(reason)
            if group == "security":
                security_sources.setdefault(kind, Availability.UNAVAILABLE)
            continue
        ok[group].append(label)

    def prov(group: str) -> list[Provenance]:
        return [Provenance(source="artifact", detail=name) for name in ok[group]]

    def note(group: str) -> str:
        return f"; {len(rejected[group])} rejected (see problems)" if rejected[group] else ""

    status = _availability("tests", ok["tests"], rejected["tests"], unread)
    if status:
        tests_part = TestsPart(availability=status[0], reason=status[1])
    else:
        tests_part = tests.to_part(prov("tests"))
        tests_part.reason += note("tests")

    status = _availability("coverage", ok["coverage"], rejected["coverage"], unread)
    if status:
        coverage_part = CoveragePart(availability=status[0], reason=status[1])
    else:
        coverage_part = merge_coverage(coverage, prov("coverage"))
        coverage_part.reason += note("coverage")

    findings = security.sorted_findings()
    status = _availability("security", ok["security"], rejected["security"], unread)
    if status:
        security_part = SecurityPart(availability=status[0], reason=status[1], sources=security_sources)
    else:
        security_part = SecurityPart(
            availability=Availability.OK,
            reason=f"{len(ok['security'])} SARIF/Trivy report(s): {sum(security.counts.values())} distinct finding(s)"
                   + note("security"),
            provenance=prov("security"), findings=findings,
            counts={k: v for k, v in security.counts.items() if v}, sources=security_sources)

    status = _availability("performance", ok["performance"], rejected["performance"], unread)
    perf_samples: PerfBaseline | None = None
    if status:
        performance_part = PerformancePart(availability=status[0], reason=status[1])
    else:
        perf_samples, extra = merge_performance(perf_runs, lim)
        performance_part = perf_samples.to_part(prov("performance"))
        performance_part.reason += extra + note("performance")

    return ArtifactResults(tests=tests_part, coverage=coverage_part, security=security_part,
                           security_findings=findings, performance=performance_part,
                           perf_samples=perf_samples, problems=problems, kinds=kinds)
