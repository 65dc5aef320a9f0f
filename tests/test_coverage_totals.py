"""A coverage report claiming more covered than coverable lines is refused, whatever its format.

Only Cobertura was checked: an lcov, Clover, OpenCover or coverage.py report saying 500 of 10 lines are
covered was summed with the other reports and lifted the coverage of code no test ran (a 12 % project
passed the 70 % minimum). Each fixture is a real tool's report (tests/fixtures/corpus) with its totals
raised past what it can cover.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scorer.evidence import Availability
from scorer.parsers import ArtifactFile, parse_artifacts

CORPUS = Path(__file__).parent / "fixtures" / "corpus" / "artifacts" / "coverage" / "reportgenerator-docs"


def _lcov() -> bytes:
    text = (CORPUS / "lcov" / "lcov.info").read_text()
    return re.sub(r"^LH:\d+$", "LH:5000", text, count=1, flags=re.MULTILINE).encode()


def _clover() -> bytes:
    text = (CORPUS / "Clover" / "Clover.xml").read_text()
    return text.replace('coveredstatements="75"', 'coveredstatements="7500"', 1).encode()


def _opencover() -> bytes:
    text = (CORPUS / "OpenCover" / "OpenCover.xml").read_text(encoding="utf-8-sig")
    return text.replace('visitedSequencePoints="75"', 'visitedSequencePoints="7500"', 1).encode()


def _coveragepy() -> bytes:
    totals = {"covered_lines": 5000, "num_statements": 10, "percent_covered": 50000.0, "missing_lines": 0,
              "excluded_lines": 0, "num_branches": 0, "covered_branches": 0}
    return json.dumps({"meta": {"version": "7.4.0", "format": 2}, "files": {}, "totals": totals}).encode()


def _cobertura_low() -> bytes:
    # a genuine report beside the bogus one: 120 of 1000 lines covered
    return (b'<?xml version="1.0"?><coverage line-rate="0.12" branch-rate="0" lines-valid="1000" '
            b'lines-covered="120" version="7.4"><packages/></coverage>')


@pytest.mark.parametrize(("name", "body"), [
    ("lcov.info", _lcov), ("clover.xml", _clover), ("opencover.xml", _opencover), ("coverage.json", _coveragepy),
])  # fmt: skip
def test_a_report_with_more_covered_than_coverable_lines_is_refused(name, body):
    files = [ArtifactFile.from_bytes(name, body(), origin="coverage"),
             ArtifactFile.from_bytes("coverage.xml", _cobertura_low(), origin="coverage")]
    results = parse_artifacts(files)
    cov = results.coverage
    assert cov.availability is Availability.INCOMPLETE, (cov.line_rate, cov.reason)
    assert [r.path for r in cov.refused] == [f"coverage:{name}"]
    assert "more covered than coverable" in cov.refused[0].reason
    assert cov.line_rate == pytest.approx(0.12)  # only the genuine report is counted


@pytest.mark.parametrize("name", ["lcov/lcov.info", "Clover/Clover.xml", "OpenCover/OpenCover.xml"])
def test_the_untouched_reports_are_still_read(name):
    results = parse_artifacts([ArtifactFile.from_bytes(name, (CORPUS / name).read_bytes(), origin="coverage")])
    assert results.coverage.availability is Availability.OK, results.coverage.reason
    assert 0 < (results.coverage.line_rate or 0) <= 1
