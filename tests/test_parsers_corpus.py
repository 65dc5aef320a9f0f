"""Every real report in the corpus (the vendored fixtures, or the complete shared collection when present) either parses to totals that match an independent count,
or, when it is deliberately broken, is rejected with a clear reason."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as DET
import pytest
from defusedxml import DefusedXmlException

from scorer.evidence import Availability
from scorer.parsers.coverage_reports import COVERAGE_PARSERS
from scorer.parsers.junit import parse_test_report
from scorer.parsers.limits import ArtifactRejected
from scorer.parsers.performance import parse_jmeter_stats, parse_jtl
from scorer.parsers.security import parse_sarif, parse_trivy
from scorer.parsers.sniff import classify
from tests.helpers import CORPUS, LARGE_CORPUS, LARGE_CORPUS_MISSING

LARGE_ART = LARGE_CORPUS / "artifacts"
ART = LARGE_ART if LARGE_ART.is_dir() else CORPUS / "artifacts"
MISSING = f"no report files found under {ART}"


def _files(sub: str, *patterns: str) -> list[Path]:
    base = ART / sub
    if not base.is_dir():
        return []
    return sorted(p for pattern in patterns for p in base.rglob(pattern) if p.is_file())


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ART)) for p in paths]


def _params(paths: list[Path]) -> list[object]:
    return [pytest.param(p, id=i) for p, i in zip(paths, _ids(paths), strict=True)] or [
        pytest.param(None, id="corpus-missing")
    ]


def _need(path: Path | None) -> Path:
    if path is None:
        pytest.skip(MISSING)
    return path


# --- tests -------------------------------------------------------------------------------------

JUNIT_FILES = _files("junit", "*.xml", "*.trx")
CASE_TAG = {"junit": "testcase", "nunit": "test-case", "xunit": "test", "trx": "UnitTestResult"}
KNOWN_ROOTS = {"testsuites": "junit", "testsuite": "junit", "test-results": "nunit", "test-run": "nunit",
               "test-suite": "nunit", "assemblies": "xunit", "assembly": "xunit", "TestRun": "trx"}


def _dom(path: Path) -> object | None:
    """Independent reading with defusedxml's DOM parser; None when it refuses the file."""
    try:
        return DET.parse(path).getroot()
    except (DET.ParseError, DefusedXmlException):
        return None


@pytest.mark.parametrize("path", _params(JUNIT_FILES))
def test_test_report_matches_independent_count(path: Path | None) -> None:
    path = _need(path)
    rel = str(path.relative_to(ART))
    root = _dom(path)
    dialect = KNOWN_ROOTS.get(root.tag.rsplit("}", 1)[-1]) if root is not None else None
    if dialect is None:
        with path.open("rb") as fh, pytest.raises(ArtifactRejected) as caught:
            parse_test_report(fh, rel)
        reason = str(caught.value)
        assert rel in reason
        assert any(w in reason for w in ("not well-formed", "entity", "not a test report", "no root")), reason
        return
    with path.open("rb") as fh:
        tally = parse_test_report(fh, rel)
    tag = CASE_TAG[dialect]
    cases = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == tag]
    if dialect == "trx":
        cases = [e for e in cases if not any(c.tag.endswith("InnerResults") for c in e)]
    if cases:
        assert tally.cases == len(cases)
    else:  # producers that only write suite totals
        declared = sum(int(s.get("tests", 0)) for s in root.iter("testsuite"))
        assert tally.cases == declared
    part = tally.to_part([])
    assert part.total == part.passed + part.failed + part.errored + part.skipped
    assert part.total <= tally.cases
    if dialect == "junit" and cases:
        bad = sum(1 for c in cases if any(ch.tag in ("failure", "error") for ch in c))
        assert tally.failed + tally.errored == bad
        # flaky resolution only ever turns failing attempts into one passing test
        assert part.failed + part.errored + tally.flaky_count >= bad - (tally.cases - part.total)
    if dialect == "trx":
        failed = sum(1 for c in cases if c.get("outcome") == "Failed")
        assert tally.failed == failed


def test_flaky_reruns_and_markers_are_detected() -> None:
    flaky_dir = ART / "junit" / "mikepenz"
    if not flaky_dir.is_dir():
        pytest.skip(MISSING)
    with (flaky_dir / "flaky_retries" / "flaky_success_first.xml").open("rb") as fh:
        part = parse_test_report(fh, "x").to_part([])
    assert (part.total, part.passed, part.failed, part.errored) == (1, 1, 0, 0)
    assert [c.name for c in part.flaky] == ["test_success_first"]
    with (flaky_dir / "maven_surefire_flaky" / "surefire-report.xml").open("rb") as fh:
        part = parse_test_report(fh, "x").to_part([])
    assert part.passed == 1 and [c.outcome for c in part.flaky] == ["flaky"]
    with (flaky_dir / "flaky_retries" / "flaky_all_failures.xml").open("rb") as fh:
        part = parse_test_report(fh, "x").to_part([])
    assert part.flaky == [] and part.failed + part.errored == 3


# --- coverage ----------------------------------------------------------------------------------

COVERAGE_FILES = _files("coverage", "*.xml", "*.info")


def _independent_coverage(kind: str, path: Path) -> tuple[int, int]:
    if kind == "lcov":
        lf = lh = 0
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.startswith("LF:"):
                lf += int(line[3:])
            elif line.startswith("LH:"):
                lh += int(line[3:])
        return lf, lh
    root = DET.parse(path).getroot()
    if kind == "cobertura":
        if root.get("lines-valid") is not None:
            return int(root.get("lines-valid")), int(root.get("lines-covered"))
        lines = [ln for cls in root.iter("class") for ln in cls.findall("lines/line")]
        return len(lines), sum(1 for ln in lines if int(ln.get("hits", "0")) > 0)
    if kind == "jacoco":
        counter = next(c for c in root.findall("counter") if c.get("type") == "LINE")
        return int(counter.get("missed")) + int(counter.get("covered")), int(counter.get("covered"))
    if kind == "clover":
        metrics = root.find("project/metrics")
        return int(metrics.get("statements")), int(metrics.get("coveredstatements"))
    if kind == "opencover":
        summary = root.find("Summary")
        return int(summary.get("numSequencePoints")), int(summary.get("visitedSequencePoints"))
    raise AssertionError(kind)


@pytest.mark.parametrize("path", _params(COVERAGE_FILES))
def test_coverage_report_matches_independent_count(path: Path | None) -> None:
    path = _need(path)
    kind = classify(path.name, path.read_bytes()[:65536])
    if kind is None:
        # dotCover, NCover, PartCover, SonarQube, mprof, ReportGenerator's own XML: not supported, left alone
        root = _dom(path)
        assert root is None or root.tag not in ("report", "CoverageSession") or root.find("Summary") is None
        return
    with path.open("rb") as fh:
        report = COVERAGE_PARSERS[kind](fh, path.name)
    assert (report.lines_valid, report.lines_covered) == _independent_coverage(kind, path)
    assert report.line_rate is None or 0.0 <= report.line_rate <= 1.0
    assert report.branch_rate is None or 0.0 <= report.branch_rate <= 1.0


# --- security ----------------------------------------------------------------------------------

SARIF_FILES = _files("sarif", "*.sarif", "*.golden")
TRIVY_FILES = _files("vulnerabilities", "*.golden")


@pytest.mark.parametrize("path", _params(SARIF_FILES))
def test_sarif_counts_match_json(path: Path | None) -> None:
    path = _need(path)
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    runs = doc.get("runs")
    # SARIF 2.1.0 3.14.23: a run whose tool failed to start or to analyse has null or absent results
    crashed = runs is None or any(
        inv.get("executionSuccessful") is False for run in runs for inv in run.get("invocations") or []
    ) or any(isinstance(run, dict) and not isinstance(run.get("results"), list) for run in runs)
    if crashed:
        with pytest.raises(ArtifactRejected, match="failed|did not complete"):
            parse_sarif(lambda: path.open("rb"), path.name)
        return
    tally = parse_sarif(lambda: path.open("rb"), path.name)
    results = [r for run in runs for r in run.get("results") or []]
    assert tally.seen == len(results)
    assert sum(tally.counts.values()) + tally.duplicates + tally.excluded == tally.seen
    passing = sum(1 for r in results if r.get("kind") in ("pass", "notApplicable", "informational"))
    assert tally.excluded >= passing
    assert len(tally.findings) == min(sum(tally.counts.values()), 1000)


def test_sarif_severity_from_security_severity_and_level() -> None:
    golden = ART / "sarif" / "tool-goldens" / "trivy_alpine-310.sarif.golden"
    if not golden.is_file():
        pytest.skip(MISSING)
    doc = json.loads(golden.read_text())
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    tally = parse_sarif(lambda: golden.open("rb"), golden.name)
    for finding in tally.findings:
        score = float(rules[finding.rule_id]["properties"]["security-severity"])
        expected = "critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4 else "low"
        assert finding.severity == expected, finding


@pytest.mark.parametrize("path", _params(TRIVY_FILES))
def test_trivy_counts_match_json(path: Path | None) -> None:
    path = _need(path)
    doc = json.loads(path.read_text())
    if doc.get("SchemaVersion") != 2:
        with pytest.raises(ArtifactRejected, match="SchemaVersion"):
            parse_trivy(lambda: path.open("rb"), path.name)
        return
    tally = parse_trivy(lambda: path.open("rb"), path.name)
    items = [(kind, x) for res in doc.get("Results") or [] for kind in ("Vulnerabilities", "Misconfigurations", "Secrets")
             for x in res.get(kind) or []]
    assert tally.seen == len(items)
    passed = sum(1 for kind, x in items if kind == "Misconfigurations" and x.get("Status") != "FAIL")
    assert tally.excluded == passed
    assert sum(tally.counts.values()) + tally.duplicates == tally.seen - passed
    critical = {(x["VulnerabilityID"], x.get("PkgName")) for k, x in items if k == "Vulnerabilities" and x.get("Severity") == "CRITICAL"}
    assert {(f.rule_id, (f.package or "").split("@")[0]) for f in tally.findings
            if f.severity == "critical" and f.package} <= critical


# --- performance -------------------------------------------------------------------------------

STATS_FILES = _files("performance/jmeter/statistics", "*.json")
JTL_FILES = _files("performance/jmeter/jtl", "*.jtl")


@pytest.mark.parametrize("path", _params(STATS_FILES))
def test_jmeter_statistics_match_json(path: Path | None) -> None:
    path = _need(path)
    doc = json.loads(path.read_text())
    with path.open("rb") as fh:
        run = parse_jmeter_stats(fh, path.name)
    assert run.overall is not None
    assert run.overall.samples == doc["Total"]["sampleCount"]
    assert run.overall.p95_ms == pytest.approx(doc["Total"]["pct2ResTime"])
    assert run.overall.error_rate == pytest.approx(doc["Total"]["errorPct"] / 100)
    assert len(run.transactions) == len(doc) - 1


@pytest.mark.parametrize("path", _params(JTL_FILES))
def test_jtl_matches_csv_count(path: Path | None) -> None:
    path = _need(path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with path.open("rb") as fh:
        run = parse_jtl(fh, path.name)
    assert run.overall is not None and run.overall.samples == len(rows)
    per_label: dict[str, int] = {}
    for row in rows:
        per_label[row["label"]] = per_label.get(row["label"], 0) + 1
    assert {t.name: t.samples for t in run.transactions} == per_label
    errors = sum(1 for r in rows if r["success"] == "false")
    assert run.overall.error_rate == pytest.approx(errors / len(rows))
    elapsed = sorted(int(r["elapsed"]) for r in rows)
    assert run.overall.p50_ms == pytest.approx(elapsed[len(elapsed) // 2], abs=1.0)
    assert len(run.overall.points_ms) <= 1000 and run.overall.points_ms == sorted(run.overall.points_ms)


def test_vendored_corpus_folder_end_to_end() -> None:
    from scorer.parsers import iter_dir_files, parse_artifacts

    _check_whole_folder(parse_artifacts(iter_dir_files(CORPUS / "artifacts")))


def _check_whole_folder(results: Any) -> None:
    # corpora hold deliberately malformed reports beside good ones: every part read something,
    # and each part that met a malformed file says so and names it
    parts = (results.tests, results.coverage, results.security, results.performance)
    assert all(p.has_data for p in parts)
    for p in parts:
        assert p.ok or (p.availability is Availability.INCOMPLETE and p.refused)
    assert {r.path for r in results.refused} == {r.path for p in parts for r in p.refused}
    assert all(re.match(r"^\S", p) and "\n" not in p for p in results.problems)
    assert results.perf_samples is not None and results.perf_samples.overall is not None


def test_large_corpus_folder_end_to_end() -> None:
    if not LARGE_ART.is_dir():
        pytest.skip(LARGE_CORPUS_MISSING)
    from scorer.parsers import iter_dir_files, parse_artifacts

    results = parse_artifacts(iter_dir_files(LARGE_ART))
    _check_whole_folder(results)
    assert any(r.path.endswith("corrupt-xml.xml") for r in results.tests.refused)
    assert results.not_understood_total >= len(results.not_understood) > 0
    assert results.tests.total > 1000 and results.tests.files > 100
    assert any("sec1752" in p and "entity" in p for p in results.problems)
