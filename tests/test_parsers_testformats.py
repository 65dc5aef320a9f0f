"""Test reports beyond JUnit: the real outputs of mocha, Jest, go test, RSpec, TAP producers and pytest-json-report.

The fixtures (tests/fixtures/reports/, see its README) were written by each tool on the same tiny
suite; dart's follows its documented protocol. Each is read through ``parse_artifacts`` exactly as an
uploaded artifact is, so sniffing, parsing and the refusal of a truncated copy are all exercised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from github_app.commands.assess import assess
from scorer.evidence import Availability
from scorer.parsers import ArtifactFile, ArtifactLimits, parse_artifacts
from scorer.parsers.sniff import classify
from tests.helpers import CORPUS

REPORTS = Path(__file__).parent / "fixtures" / "reports"

# fixture -> (kind, total, passed, failed, errored, skipped, {failing test name: words of its message})
EXPECTED = {
    "mocha/mocha.json": ("mocha", 4, 2, 1, 0, 1, {"applies the discount code": "10 !== 9"}),
    "jest/jest-results.json": ("jest", 6, 2, 1, 1, 2, {"applies the discount code": "Expected: 9",
                                                       "/tmp/shop-web/broken.test.js": "Cannot find module"}),
    "gotest/go-test.json": ("gotest", 5, 3, 1, 0, 1, {"TestDiscount/ten_percent": "want 9 after the discount"}),
    "rspec/rspec.json": ("rspec", 5, 2, 1, 0, 2, {"applies the discount code": "expected: 9"}),
    "dart/dart-test.json": ("dart", 4, 2, 1, 0, 1, {"cart applies the discount code": "Expected: <9>"}),
    "tap/perl-test-more.tap": ("tap", 5, 2, 1, 0, 2, {"applies the discount code": ""}),
    "tap/node-test.tap": ("tap", 4, 2, 1, 0, 1, {"applies the discount code": "strictly equal"}),
    "pytest-json-report/.report.json": ("pytest_json", 5, 2, 1, 1, 1, {"test_applies_the_discount_code": "assert 10 == 9",
                                                                      "test_charges_the_card": "gateway unreachable"}),
}  # fmt: skip


def _file(rel: str, name: str | None = None, data: bytes | None = None) -> ArtifactFile:
    return ArtifactFile.from_bytes(name or rel, (REPORTS / rel).read_bytes() if data is None else data)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_each_tool_output_is_read_with_its_counts_and_failures(rel: str) -> None:
    kind, total, passed, failed, errored, skipped, failing = EXPECTED[rel]
    results = parse_artifacts([_file(rel)])
    t = results.tests
    assert results.kinds == {rel: kind} and results.problems == []
    assert t.availability is Availability.OK, t.reason
    assert (t.total, t.passed, t.failed, t.errored, t.skipped) == (total, passed, failed, errored, skipped)
    messages = {c.name: c.message for c in t.failures}
    assert set(messages) == set(failing)
    for name, words in failing.items():
        assert words in messages[name], messages[name]
    assert [p.detail for p in t.provenance] == [rel]


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_content_decides_the_format_whatever_the_file_is_called(rel: str) -> None:
    data = (REPORTS / rel).read_bytes()
    assert classify("results/output.txt", data[: ArtifactLimits().sniff_bytes]) == EXPECTED[rel][0]


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_a_truncated_copy_is_refused_and_its_part_is_incomplete(rel: str) -> None:
    data = (REPORTS / rel).read_bytes()
    cut = data[: len(data) * 2 // 3]
    alone = parse_artifacts([_file(rel, "ci/" + Path(rel).name, cut)])
    assert alone.tests.availability is Availability.UNAVAILABLE
    [refused] = alone.tests.refused
    assert refused.path == "ci/" + Path(rel).name and refused.kind == EXPECTED[rel][0]
    assert "cut short" in refused.reason or "not a complete" in refused.reason, refused.reason
    beside = parse_artifacts([_file(rel), _file(rel, "ci/" + Path(rel).name, cut)])
    assert beside.tests.availability is Availability.INCOMPLETE and beside.tests.total == EXPECTED[rel][1]


def test_go_test_with_other_output_mixed_in_is_refused_with_a_fix() -> None:
    data = b"# example.com/shop/cart\ncart/cart.go:3:1: syntax error\n" + (REPORTS / "gotest/go-test.json").read_bytes()
    results = parse_artifacts([_file("gotest/go-test.json", "go-test.json", data)])
    [refused] = results.tests.refused
    assert refused.kind == "gotest" and "line 1" in refused.reason and "redirect only its stdout" in refused.reason


def test_go_package_that_fails_to_build_is_an_error_not_a_pass() -> None:
    events = [
        {"Action": "output", "Package": "example.com/shop/cart", "Output": "FAIL\texample.com/shop/cart [build failed]\n"},
        {"Action": "fail", "Package": "example.com/shop/cart", "Elapsed": 0},
    ]  # fmt: skip
    data = "\n".join(json.dumps(e) for e in events).encode()
    t = parse_artifacts([_file("gotest/go-test.json", "go-test.json", data)]).tests
    assert t.ok and (t.total, t.errored) == (1, 1) and t.failures[0].name == "[package]"


def test_tap_bail_out_is_an_error() -> None:
    data = b"TAP version 13\n1..3\nok 1 - connects\nBail out! database unreachable\n"
    t = parse_artifacts([_file("tap/node-test.tap", "db.tap", data)]).tests
    assert t.ok and (t.passed, t.errored) == (1, 1) and "database unreachable" in t.failures[0].message


def test_dart_run_without_a_done_event_is_refused() -> None:
    lines = (REPORTS / "dart/dart-test.json").read_bytes().splitlines()
    data = b"\n".join(lines[:-1]) + b"\n"  # every line whole, only the final event missing
    [refused] = parse_artifacts([_file("dart/dart-test.json", "dart-test.json", data)]).tests.refused
    assert "no done event" in refused.reason


def test_a_json_report_past_its_cap_is_refused() -> None:
    limits = ArtifactLimits(max_json_report_bytes=2048)
    results = parse_artifacts([_file("jest/jest-results.json")], limits)
    [refused] = results.tests.refused
    assert "larger than" in refused.reason and "max_json_report_bytes" in refused.reason


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    data = b'{"numTotalTests": 1, "testResults": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    results = parse_artifacts([_file("jest/jest-results.json", "jest.json", data)])
    assert results.tests.availability is Availability.UNAVAILABLE
    assert results.tests.refused[0].reason


def test_an_endless_line_is_refused() -> None:
    data = b'{"Time":"2025-01-01T00:00:00Z","Action":"output","Package":"p","Output":"' + b"x" * (2 << 20) + b'"}\n'
    [refused] = parse_artifacts([_file("gotest/go-test.json", "go-test.json", data)]).tests.refused
    assert "line 1 is longer than" in refused.reason


def test_a_document_of_another_format_named_like_a_report_is_not_understood() -> None:
    dotcover = b'<?xml version="1.0"?><Root CoveredStatements="10" TotalStatements="12"/>'
    results = parse_artifacts([ArtifactFile.from_bytes("coverage.xml", dotcover)])
    assert results.coverage.availability is Availability.NOT_CONFIGURED and results.refused == []
    [listed] = results.not_understood
    assert listed.detail == "XML document <Root> of a format gonogo does not read; named like a cobertura report but not one"


def test_parsing_is_bounded_in_time() -> None:
    results = parse_artifacts([_file("node-test.tap", "big.tap", b"1..40000\n" + b"ok - fine\n" * 40_000)],
                              ArtifactLimits(max_seconds_per_file=0.0))  # fmt: skip
    [refused] = results.tests.refused
    assert "took longer than 0 s" in refused.reason


def test_reports_of_every_format_merge_into_one_part() -> None:
    results = parse_artifacts([_file(rel) for rel in sorted(EXPECTED)])
    t = results.tests
    assert t.ok and t.files == len(EXPECTED)
    assert t.total == sum(e[1] for e in EXPECTED.values())
    assert "go," in t.reason and "rspec" in t.reason


def test_unknown_formats_are_listed_as_not_understood() -> None:
    cucumber = b'[{"uri": "features/cart.feature", "elements": [{"name": "discount", "steps": []}]}]'
    results = parse_artifacts([
        ArtifactFile.from_bytes("cucumber.json", cucumber),
        ArtifactFile.from_bytes("screenshots/cart.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ArtifactFile.from_bytes("results.xml", b"<?xml version='1.0'?><assertions><a ok='1'/></assertions>"),
        _file("rspec/rspec.json"),
    ])  # fmt: skip
    assert results.tests.ok and results.refused == []
    listed = {f.path: f.detail for f in results.not_understood}
    assert set(listed) == {"cucumber.json", "screenshots/cart.png", "results.xml"}
    assert listed["screenshots/cart.png"] == "binary file"
    assert "<assertions>" in listed["results.xml"] and "JSON document" in listed["cucumber.json"]
    assert results.not_understood_total == 3


def test_assess_names_the_failing_tests_and_the_files_not_understood(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "ci"
    for rel in EXPECTED:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPORTS / rel, folder / rel)
    (folder / "cucumber.json").write_bytes(b'[{"uri": "features/cart.feature", "elements": []}]')
    result = CliRunner().invoke(assess, ["--artifacts", str(folder), "--now", "2025-06-04T10:00:00+00:00"])
    assert result.exit_code == 1  # failing tests block
    section = result.stdout.split("Files not understood", 1)[1]
    assert "cucumber.json: JSON document of a format gonogo does not read" in section
    data = json.loads(CliRunner().invoke(assess, ["--artifacts", str(folder), "--format", "json"]).stdout)
    failing = {f["name"] for f in data["evidence"]["tests"]["failures"]}
    assert {"TestDiscount/ten_percent", "test_applies_the_discount_code", "cart applies the discount code"} <= failing
    assert data["not_understood"] == [{"path": "cucumber.json", "detail": "JSON document of a format gonogo does not read (keys: elements, uri)"}]


# --- go test -json outputs recorded by go-junit-report, against the JUnit it makes of them --------

GO_JUNIT = CORPUS / "artifacts" / "junit" / "go-junit-report"
# where go-junit-report counts differently, on purpose: a parent test whose subtest failed is not a
# second failure here (103), and benchmarks are not tests (109)
_GO_SAME = ["100-pass", "101-fail", "104-race", "105-panic", "106-testmain", "107-skip", "108-paniclate",
            "110-benchfail", "111-empty", "112-parallel", "113-race"]  # fmt: skip


@pytest.mark.parametrize("case", _GO_SAME)
def test_go_test_json_counts_match_go_junit_report(case: str) -> None:
    [events] = GO_JUNIT.glob(f"{case}.gojson.txt")
    ours = parse_artifacts([ArtifactFile.from_path(events)])
    theirs = parse_artifacts([ArtifactFile.from_path(GO_JUNIT / f"{case[:3]}-report.xml")]).tests
    assert ours.kinds == {events.name: "gotest"} and ours.problems == []
    t = ours.tests
    assert (t.total, t.passed, t.failed, t.errored, t.skipped) == (
        theirs.total, theirs.passed, theirs.failed, theirs.errored, theirs.skipped)


def test_go_subtests_count_once_and_benchmarks_are_not_tests() -> None:
    if not GO_JUNIT.is_dir():
        pytest.skip(f"shared corpus not found at {GO_JUNIT}; CI provides it")
    t = parse_artifacts([ArtifactFile.from_path(GO_JUNIT / "103-subtests.gojson.txt")]).tests
    assert (t.total, t.failed) == (3, 1) and all("/" in c.name for c in t.failures)


def test_go_build_failure_written_as_text_is_refused_not_ignored() -> None:
    """Older go versions print a build failure as text even with -json: that file must not vanish."""
    if not GO_JUNIT.is_dir():
        pytest.skip(f"shared corpus not found at {GO_JUNIT}; CI provides it")
    results = parse_artifacts([ArtifactFile.from_path(GO_JUNIT / "102-broken.gojson.txt")])
    assert results.tests.availability is Availability.UNAVAILABLE
    [refused] = results.tests.refused
    assert refused.kind == "gotest" and "line 1" in refused.reason
