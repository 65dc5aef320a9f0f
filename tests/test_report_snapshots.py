"""The text and Markdown reports of real corpus artifacts, compared with reviewed snapshots.

A change of wording shows up here as a diff to review. After an intended change, rewrite the
snapshots with ``GONOGO_UPDATE_SNAPSHOTS=1 pytest tests/test_report_snapshots.py`` and commit them.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rules.pipeline import OFFLINE_SCOPE, evaluate, evidence_from_artifacts
from rules.policy import default_policy
from rules.report import check_run_markdown, load_test_lines, markdown_inline, render_text
from rules.samples import clean_evidence
from rules.types import Decision
from scorer.parsers import iter_dir_files, parse_artifacts

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("GONOGO_UPDATE_SNAPSHOTS") == "1"
NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)  # a Wednesday
JMETER = "performance/jmeter/statistics"
GREEN = ["junit/go-junit-report/019-report.xml", "coverage/reportgenerator-testprojects/C++/Reports/lcov.info",
         "sarif/sarif-tutorials/ExceptionalConditions/One run empty results.sarif"]  # fmt: skip
CASES: dict[str, list[str]] = {
    "empty-folder": [],
    "green": GREEN,
    "failing-pytest": ["junit/enricomi/junit-xml/pytest/junit.fail.xml", *GREEN[1:]],
    "vulnerable-images": [*GREEN[:2], "vulnerabilities/trivy/alpine-39.json.golden",
                          "vulnerabilities/trivy/photon-30.json.golden"],
    "load-test-errors": [*GREEN, f"{JMETER}/2022-07-05T12-13-58_dd05e48a56.json"],
    "corrupt-report": [*GREEN, "junit/enricomi/junit-xml/pytest/corrupt-xml.xml"],
}  # fmt: skip


def _decision(corpus: Path, files: list[str], into: Path) -> Decision:
    into.mkdir()
    for rel in files:
        src = corpus / "artifacts" / rel
        shutil.copyfile(src, into / ("statistics.json" if "/statistics/" in rel else src.name))
    results = parse_artifacts(iter_dir_files(into))
    ev = evidence_from_artifacts(results, environment="production", repository="octo/shop", sha="0" * 40, created_at=NOW)
    return evaluate(ev, default_policy(), "production", NOW, scope=OFFLINE_SCOPE)


def _check(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"no snapshot {path}: run GONOGO_UPDATE_SNAPSHOTS=1 pytest {Path(__file__).name}, review, commit")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"report differs from {path}; if the change is intended, rewrite with GONOGO_UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("case", list(CASES))
def test_reports_match_their_snapshots(case: str, corpus: Path, tmp_path: Path) -> None:
    d = _decision(corpus, CASES[case], tmp_path / case)
    _check(f"{case}.txt", render_text(d))
    _check(f"{case}.md", check_run_markdown(d))


def test_text_and_markdown_say_the_same_things(corpus: Path, tmp_path: Path) -> None:
    d = _decision(corpus, CASES["load-test-errors"], tmp_path / "load")
    text, markdown = render_text(d), check_run_markdown(d)
    for line in text.splitlines():
        words = line.strip().lstrip("-0123456789. ").rstrip(":")
        if words and "  " not in words:  # table rows are laid out differently
            assert markdown_inline(words) in markdown, words


def test_the_report_names_what_a_release_manager_must_act_on(corpus: Path, tmp_path: Path) -> None:
    failing = render_text(_decision(corpus, CASES["failing-pytest"], tmp_path / "tests"))
    assert "test.test_spark.SparkTests.test_rsh_events (test/test_spark.py:819)" in failing
    vulnerable = render_text(_decision(corpus, CASES["vulnerable-images"], tmp_path / "vulns"))
    assert "Worst security findings:" in vulnerable and "critical CVE-2019-14697 in musl@1.1.20-r4" in vulnerable
    corrupt = render_text(_decision(corpus, CASES["corrupt-report"], tmp_path / "corrupt"))
    assert "corrupt-xml.xml" in corrupt and "could not be read" in corrupt


def test_load_test_transactions_at_100_percent_errors_are_named(corpus: Path, tmp_path: Path) -> None:
    d = _decision(corpus, [f"{JMETER}/2022-07-05T12-13-58_dd05e48a56.json"], tmp_path / "jmeter")
    failing = [t.name for t in d.evidence.performance.transactions if (t.error_rate or 0) >= 1.0]
    assert failing == ["Query cross patient #1"]
    for report in (render_text(d), check_run_markdown(d)):
        assert "Query cross patient #1: 100% errors, p95 52 ms, 500 samples" in report


def test_every_failing_transaction_is_named_worst_first() -> None:
    txs = [{"name": f"Checkout step {i}", "samples": 200, "p95_ms": 40.0 + i, "error_rate": 1.0} for i in range(4)]
    txs += [{"name": "Browse", "samples": 900, "p95_ms": 300.0, "error_rate": 0.0, "regression_pct": 42.0,
             "baseline_p95_ms": 211.0, "significant": True},
            {"name": "Search", "samples": 900, "p95_ms": 90.0, "error_rate": 0.0}]  # fmt: skip
    ev = clean_evidence(performance={"tool": "jmeter", "transactions": txs,
                                     "overall": {"name": "Total", "samples": 2700, "p95_ms": 250.0, "error_rate": 0.3}})  # fmt: skip
    d = evaluate(ev, default_policy(), "production", NOW)
    lines = load_test_lines(d)
    assert lines[:4] == [f"Checkout step {i}: 100% errors, p95 {40 + i} ms, 200 samples" for i in range(4)]
    assert lines[4] == "Browse: p95 +42% vs baseline, p95 300 ms, 900 samples" and len(lines) == 5
    assert all(line in render_text(d) and line in check_run_markdown(d) for line in lines)
