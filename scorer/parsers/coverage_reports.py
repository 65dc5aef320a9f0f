"""Read line and branch coverage totals from Cobertura, JaCoCo, Clover, OpenCover, lcov and coverage.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, BinaryIO

import ijson

from scorer.evidence import Availability, CoveragePart, Provenance
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline, read_lines
from scorer.parsers.xmlsafe import feed, new_parser

Stream = BinaryIO | CappedReader


@dataclass
class CoverageReport:
    """Coverage totals of one report file."""

    format: str
    lines_valid: int = 0
    lines_covered: int = 0
    branches_valid: int = 0
    branches_covered: int = 0

    @property
    def line_rate(self) -> float | None:
        return self.lines_covered / self.lines_valid if self.lines_valid else None

    @property
    def branch_rate(self) -> float | None:
        return self.branches_covered / self.branches_valid if self.branches_valid else None

    def checked(self, what: str) -> CoverageReport:
        """Return the report, or refuse it when it claims more covered than coverable lines or branches.

        Such totals are no measurement (a rate above 100 %), and summed with the other reports they would
        lift the coverage of code no test ran.
        """
        if self.lines_covered > self.lines_valid or self.branches_covered > self.branches_valid:
            raise ArtifactRejected(f"{what} claims more covered than coverable lines or branches; not trusted")
        return self


def _int(value: str | None) -> int:
    try:
        return max(int(float(value or 0)), 0)
    except ValueError:
        return 0


_CONDITION = re.compile(r"\((\d+)\s*/\s*(\d+)\)")


def _xml(stream: Stream, what: str, limits: ArtifactLimits, deadline: Deadline | None,
         start: Any, end: Any = None) -> None:
    parser = new_parser(what)
    parser.StartElementHandler = start
    if end is not None:
        parser.EndElementHandler = end
    feed(parser, stream, what, deadline or Deadline(limits.max_seconds_per_file, what))


def parse_cobertura(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                    deadline: Deadline | None = None) -> CoverageReport:
    """Parse a Cobertura XML report (coverage.py, Istanbul, coverlet, gcovr, Cobertura)."""
    lim = limits or ArtifactLimits()
    report = CoverageReport("cobertura")
    root: dict[str, str] = {}
    stack: list[str] = []
    counted = [0, 0, 0, 0]  # lines, covered, branches, covered branches (class-level <line>s)

    def start(name: str, attrs: dict[str, str]) -> None:
        if not stack:
            if name != "coverage":
                raise ArtifactRejected(f"{what} is not a Cobertura report (root element <{name}>)")
            root.update(attrs)
        elif name == "line" and len(stack) >= 2 and stack[-1] == "lines" and stack[-2] == "class":
            counted[0] += 1
            if _int(attrs.get("hits")) > 0:
                counted[1] += 1
            if attrs.get("branch") == "true":
                m = _CONDITION.search(attrs.get("condition-coverage") or "")
                if m:
                    counted[3] += int(m.group(1))
                    counted[2] += int(m.group(2))
        stack.append(name)

    def end(name: str) -> None:
        stack.pop()

    _xml(stream, what, lim, deadline, start, end)
    if "lines-valid" in root:
        report.lines_valid, report.lines_covered = _int(root.get("lines-valid")), _int(root.get("lines-covered"))
        report.branches_valid = _int(root.get("branches-valid"))
        report.branches_covered = _int(root.get("branches-covered"))
    else:
        report.lines_valid, report.lines_covered, report.branches_valid, report.branches_covered = counted
    return report.checked(what)


def parse_jacoco(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                 deadline: Deadline | None = None) -> CoverageReport:
    """Parse a JaCoCo XML report (report-level LINE and BRANCH counters)."""
    lim = limits or ArtifactLimits()
    report = CoverageReport("jacoco")
    depth = [0]

    def start(name: str, attrs: dict[str, str]) -> None:
        depth[0] += 1
        if depth[0] == 1 and name != "report":
            raise ArtifactRejected(f"{what} is not a JaCoCo report (root element <{name}>)")
        if depth[0] == 2 and name == "counter":
            missed, covered = _int(attrs.get("missed")), _int(attrs.get("covered"))
            if attrs.get("type") == "LINE":
                report.lines_valid, report.lines_covered = missed + covered, covered
            elif attrs.get("type") == "BRANCH":
                report.branches_valid, report.branches_covered = missed + covered, covered

    def end(name: str) -> None:
        depth[0] -= 1

    _xml(stream, what, lim, deadline, start, end)
    return report.checked(what)


def parse_clover(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                 deadline: Deadline | None = None) -> CoverageReport:
    """Parse a Clover XML report (project-level statement and conditional metrics)."""
    lim = limits or ArtifactLimits()
    report = CoverageReport("clover")
    stack: list[str] = []
    found = [False]

    def start(name: str, attrs: dict[str, str]) -> None:
        if not stack and name != "coverage":
            raise ArtifactRejected(f"{what} is not a Clover report (root element <{name}>)")
        if name == "metrics" and stack and stack[-1] == "project" and not found[0]:
            found[0] = True
            report.lines_valid = _int(attrs.get("statements"))
            report.lines_covered = _int(attrs.get("coveredstatements"))
            report.branches_valid = _int(attrs.get("conditionals"))
            report.branches_covered = _int(attrs.get("coveredconditionals"))
        stack.append(name)

    def end(name: str) -> None:
        stack.pop()

    _xml(stream, what, lim, deadline, start, end)
    if not found[0]:
        raise ArtifactRejected(f"{what} has no project-level <metrics>; not a complete Clover report")
    return report.checked(what)


def parse_opencover(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                    deadline: Deadline | None = None) -> CoverageReport:
    """Parse an OpenCover XML report (session-level Summary: sequence and branch points)."""
    lim = limits or ArtifactLimits()
    report = CoverageReport("opencover")
    stack: list[str] = []
    found = [False]

    def start(name: str, attrs: dict[str, str]) -> None:
        if not stack and name != "CoverageSession":
            raise ArtifactRejected(f"{what} is not an OpenCover report (root element <{name}>)")
        if name == "Summary" and len(stack) == 1 and not found[0]:
            found[0] = True
            report.lines_valid = _int(attrs.get("numSequencePoints"))
            report.lines_covered = _int(attrs.get("visitedSequencePoints"))
            report.branches_valid = _int(attrs.get("numBranchPoints"))
            report.branches_covered = _int(attrs.get("visitedBranchPoints"))
        stack.append(name)

    def end(name: str) -> None:
        stack.pop()

    _xml(stream, what, lim, deadline, start, end)
    if not found[0]:
        raise ArtifactRejected(f"{what} has no session <Summary>; not a complete OpenCover report")
    return report.checked(what)


def parse_lcov(stream: Stream, what: str, limits: ArtifactLimits | None = None,
               deadline: Deadline | None = None) -> CoverageReport:
    """Parse an lcov tracefile (LF/LH and BRF/BRH per record, DA/BRDA counted when totals are absent)."""
    lim = limits or ArtifactLimits()
    dl = deadline or Deadline(lim.max_seconds_per_file, what)
    report = CoverageReport("lcov")
    records = 0
    rec = {"LF": -1, "LH": -1, "BRF": -1, "BRH": -1, "da": 0, "da_hit": 0, "brda": 0, "brda_hit": 0}

    def close_record() -> None:
        report.lines_valid += rec["LF"] if rec["LF"] >= 0 else rec["da"]
        report.lines_covered += rec["LH"] if rec["LH"] >= 0 else rec["da_hit"]
        report.branches_valid += rec["BRF"] if rec["BRF"] >= 0 else rec["brda"]
        report.branches_covered += rec["BRH"] if rec["BRH"] >= 0 else rec["brda_hit"]
        rec.update(LF=-1, LH=-1, BRF=-1, BRH=-1, da=0, da_hit=0, brda=0, brda_hit=0)

    open_record = False
    for line in read_lines(stream, lim, what, dl):
        tag, _, value = line.strip().partition(":")
        if tag == "SF":
            open_record = True
        elif tag == "end_of_record":
            if open_record:
                records += 1
                close_record()
            open_record = False
        elif tag in ("LF", "LH", "BRF", "BRH"):
            rec[tag] = _int(value)
        elif tag == "DA":
            parts = value.split(",")
            rec["da"] += 1
            if len(parts) >= 2 and _int(parts[1]) > 0:
                rec["da_hit"] += 1
        elif tag == "BRDA":
            parts = value.split(",")
            rec["brda"] += 1
            if len(parts) >= 4 and parts[3] not in ("-", "0"):
                rec["brda_hit"] += 1
    if open_record:
        records += 1
        close_record()
    if records == 0:
        raise ArtifactRejected(f"{what} has no lcov records (no SF: lines)")
    return report.checked(what)


def parse_coveragepy(stream: Stream, what: str, limits: ArtifactLimits | None = None,
                     deadline: Deadline | None = None) -> CoverageReport:
    """Parse a coverage.py JSON report (``coverage json``): the ``totals`` object."""
    try:
        totals = next(ijson.items(stream, "totals"), None)
    except ijson.JSONError as exc:
        raise ArtifactRejected(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(totals, dict) or "num_statements" not in totals:
        raise ArtifactRejected(f"{what} has no 'totals' object; not a coverage.py JSON report")
    return CoverageReport(
        "coverage.py",
        lines_valid=_int(str(totals.get("num_statements", 0))),
        lines_covered=_int(str(totals.get("covered_lines", 0))),
        branches_valid=_int(str(totals.get("num_branches", 0))),
        branches_covered=_int(str(totals.get("covered_branches", 0))),
    ).checked(what)


COVERAGE_PARSERS = {
    "cobertura": parse_cobertura,
    "jacoco": parse_jacoco,
    "clover": parse_clover,
    "opencover": parse_opencover,
    "lcov": parse_lcov,
    "coveragepy": parse_coveragepy,
}


def merge_coverage(reports: list[CoverageReport], provenance: list[Provenance]) -> CoveragePart:
    """Sum line and branch counts over reports (one per module or job) into a CoveragePart."""
    lines = sum(r.lines_valid for r in reports)
    covered = sum(r.lines_covered for r in reports)
    branches = sum(r.branches_valid for r in reports)
    branches_covered = sum(r.branches_covered for r in reports)
    formats = sorted({r.format for r in reports})
    if lines == 0:
        return CoveragePart(availability=Availability.UNAVAILABLE, provenance=provenance,
                            reason="coverage reports found but they measure no lines", format=",".join(formats))
    return CoveragePart(
        availability=Availability.OK,
        reason=f"{len(reports)} coverage report(s) merged",
        provenance=provenance,
        line_rate=covered / lines,
        branch_rate=(branches_covered / branches) if branches else None,
        lines_valid=lines,
        lines_covered=covered,
        format=formats[0] if len(formats) == 1 else ",".join(formats),
    )
