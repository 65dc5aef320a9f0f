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
from typing import TypeVar

from scorer.evidence import (
    Availability,
    CoveragePart,
    NotUnderstoodFile,
    Part,
    PerformancePart,
    Provenance,
    RefusedFile,
    SecurityFinding,
    SecurityPart,
    TestsPart,
)
from scorer.parsers.coverage_reports import COVERAGE_PARSERS, CoverageReport, merge_coverage
from scorer.parsers.junit import TestTally, retry_scope
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
    describe,
    packed_format,
)
from scorer.parsers.testformats import TEST_PARSERS

__all__ = [
    "ArtifactFile", "ArtifactGlobs", "ArtifactLimits", "ArtifactRejected", "ArtifactResults", "PerfBaseline",
    "TransactionBaseline", "classify", "compare_performance", "iter_dir_files", "iter_zip_members",
    "parse_artifacts",
]  # fmt: skip

log = logging.getLogger(__name__)
P = TypeVar("P", bound=Part)

# what can go wrong while reading an untrusted file; anything else is a bug and propagates
_READ_ERRORS = (ArtifactRejected, zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeError, RecursionError)

_GROUP_NOUN = {
    "tests": "test reports (JUnit / xUnit / TRX, mocha, Jest, go test, RSpec, dart, TAP, pytest-json-report)",
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
    refused: list[RefusedFile] = field(default_factory=list)  # report files that could not be read completely
    not_understood: list[NotUnderstoodFile] = field(default_factory=list)  # capped at limits.max_listed_files
    not_understood_total: int = 0


def _status(group: str, ok: list[str], refused: list[RefusedFile]) -> tuple[Availability, str] | None:
    """Return (availability, reason) when the group read nothing, else None."""
    if ok:
        return None
    noun = _GROUP_NOUN[group]
    if refused:
        return Availability.UNAVAILABLE, f"all {len(refused)} {noun} were rejected: " + "; ".join(_line(r) for r in refused[:3])
    return Availability.NOT_CONFIGURED, f"no {noun} found in artifacts"


def _line(r: RefusedFile) -> str:
    return r.reason if r.path in r.reason else f"{r.path}: {r.reason}"


def _incomplete(part: P, refused: list[RefusedFile]) -> P:
    """Mark a part that read some files as incomplete when others of its files were refused."""
    if not refused:
        return part
    part.availability = Availability.INCOMPLETE
    part.refused = list(refused)
    part.reason += (f"; INCOMPLETE: {len(refused)} file(s) refused, so these figures are a lower bound at best: "
                    + "; ".join(_line(r) for r in refused[:3]))
    return part


def parse_artifacts(files: Iterable[ArtifactFile], limits: ArtifactLimits | None = None,
                    globs: ArtifactGlobs | None = None) -> ArtifactResults:
    """Sniff and parse every file, merge per kind, and build the Evidence parts.

    A file that looks like a report (by content or name) and cannot be read completely is refused:
    its part becomes ``incomplete`` (or ``unavailable`` when nothing else was read) and lists it. A
    file that no parser reads is listed as not understood. Nothing is dropped without a word, except
    what ``globs.ignore`` names explicitly.
    """
    lim = limits or ArtifactLimits()
    glb = globs or ArtifactGlobs()
    tests = TestTally(limits=lim)
    coverage: list[CoverageReport] = []
    security = SecurityTally(limits=lim)
    security_sources: dict[str, Availability] = {}
    perf_runs: list[tuple[str, PerfBaseline]] = []
    ok: dict[str, list[str]] = {g: [] for g in _GROUP_NOUN}
    refused: dict[str, list[RefusedFile]] = {g: [] for g in _GROUP_NOUN}
    all_refused: list[RefusedFile] = []
    not_understood: list[NotUnderstoodFile] = []
    not_understood_total = 0
    problems: list[str] = []
    kinds: dict[str, str] = {}

    def refuse(label: str, kind: str, reason: str, groups: Iterable[str]) -> None:
        entry = RefusedFile(path=label, kind=kind, reason=reason)
        log.info("artifact.refused", extra={"file": label, "kind": kind, "reason": reason})
        problems.append(f"{label} ({kind}): {reason}" if label not in reason else reason)
        all_refused.append(entry)
        for g in groups:
            refused[g].append(entry)

    for file in files:
        label = file.label
        if file.rejected is not None:
            # an archive or member that could not be opened may have held any kind of report
            hinted = glb.hint(file.name)
            refuse(label, hinted or "unknown", file.rejected, [_group(hinted)] if hinted else list(_GROUP_NOUN))
            continue
        if glb.ignored(file.name):
            continue
        try:
            head = file.head(lim.sniff_bytes)
            kind = classify(file.name, head, glb)
        except _READ_ERRORS as exc:
            hinted = glb.hint(file.name)
            refuse(label, hinted or "unknown", f"could not be read ({exc})", [_group(hinted)] if hinted else list(_GROUP_NOUN))
            continue
        if kind is None and (packed := packed_format(head)) is not None:
            held = glb.packed_hint(file.name)
            if held is not None:
                # an archive or a compressed file named like a report holds reports gonogo did not open
                refuse(label, held or "unknown", (
                    f"{label} is a {packed}-compressed file named like a report: gonogo does not open archives or "
                    "compressed files inside an artifact, so the reports it holds were not read; upload the report "
                    "files themselves"), [_group(held)] if held else list(_GROUP_NOUN))  # fmt: skip
                continue
        if kind is None:
            not_understood_total += 1
            if len(not_understood) < lim.max_listed_files:
                hinted = glb.hint(file.name)
                detail = describe(head) + (f"; named like a {hinted} report but not one" if hinted else "")
                not_understood.append(NotUnderstoodFile(path=label, detail=detail))
            continue
        kinds[label] = kind
        group = _group(kind)
        deadline = Deadline(lim.max_seconds_per_file, label)
        try:
            if group == "tests":
                with file.open() as stream:
                    tally = TEST_PARSERS[kind](stream, label, lim, deadline)
                tests.merge(tally, retry_scope(file.run, file.origin, file.name), label, file.origin)
            elif group == "coverage":
                with file.open() as stream:
                    coverage.append(COVERAGE_PARSERS[kind](stream, label, lim, deadline))
            elif group == "security":
                parse = parse_sarif if kind == "sarif" else parse_trivy
                security.merge(parse(file.open, label, lim, deadline))
                security_sources.setdefault(kind, Availability.OK)
            else:
                with file.open() as stream:
                    perf_runs.append((label, PERFORMANCE_PARSERS[kind](stream, label, lim, deadline)))
        except _READ_ERRORS as exc:
            reason = str(exc) if isinstance(exc, ArtifactRejected) else f"{label}: {type(exc).__name__}: {exc}"
            refuse(label, kind, reason, [group])
            if group == "security":
                # one refused report of a kind makes that kind incomplete, or unreadable if none was read
                had = security_sources.get(kind)
                security_sources[kind] = Availability.INCOMPLETE if had in (Availability.OK, Availability.INCOMPLETE) else Availability.UNAVAILABLE
            continue
        if group == "security" and security_sources.get(kind) is Availability.UNAVAILABLE:
            security_sources[kind] = Availability.INCOMPLETE
        ok[group].append(label)

    def prov(group: str) -> list[Provenance]:
        return [Provenance(source="artifact", detail=name) for name in ok[group]]

    status = _status("tests", ok["tests"], refused["tests"])
    if status:
        tests_part = TestsPart(availability=status[0], reason=status[1], refused=refused["tests"])
    else:
        tests_part = _incomplete(tests.to_part(prov("tests")), refused["tests"])

    status = _status("coverage", ok["coverage"], refused["coverage"])
    if status:
        coverage_part = CoveragePart(availability=status[0], reason=status[1], refused=refused["coverage"])
    else:
        coverage_part = _incomplete(merge_coverage(coverage, prov("coverage")), refused["coverage"])

    findings = security.sorted_findings()
    status = _status("security", ok["security"], refused["security"])
    if status:
        security_part = SecurityPart(availability=status[0], reason=status[1], sources=security_sources,
                                     refused=refused["security"])
    else:
        security_part = _incomplete(SecurityPart(
            availability=Availability.OK,
            reason=f"{len(ok['security'])} SARIF/Trivy report(s): {sum(security.counts.values())} distinct finding(s)",
            provenance=prov("security"), findings=findings,
            counts={k: v for k, v in security.counts.items() if v}, sources=security_sources), refused["security"])

    status = _status("performance", ok["performance"], refused["performance"])
    perf_samples: PerfBaseline | None = None
    if status:
        performance_part = PerformancePart(availability=status[0], reason=status[1], refused=refused["performance"])
    else:
        perf_samples, extra = merge_performance(perf_runs, lim)
        performance_part = perf_samples.to_part(prov("performance"))
        performance_part.reason += extra
        performance_part = _incomplete(performance_part, refused["performance"])

    return ArtifactResults(tests=tests_part, coverage=coverage_part, security=security_part,
                           security_findings=findings, performance=performance_part,
                           perf_samples=perf_samples, problems=problems, kinds=kinds, refused=all_refused,
                           not_understood=not_understood, not_understood_total=not_understood_total)
