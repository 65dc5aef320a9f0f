"""Scores, confidence and report sentences say only what the evidence supports."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rules.pipeline import OFFLINE_SCOPE, evaluate, evidence_from_artifacts
from rules.policy import default_policy
from rules.report import check_run_markdown, render_text
from rules.samples import bare_evidence, clean_evidence
from rules.types import Decision
from scorer.evidence import Evidence
from scorer.parsers import iter_dir_files, parse_artifacts

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
PERF: dict[str, Any] = {
    "tool": "jmeter", "method": "mann-whitney",
    "overall": {"name": "Total", "samples": 5000, "p95_ms": 300.0, "p99_ms": 600.0, "error_rate": 0.001,
                "baseline_p95_ms": 295.0, "regression_pct": 1.7, "significant": False},
}  # fmt: skip


def _decide(ev: Evidence) -> Decision:
    return evaluate(ev, default_policy(), "production", NOW)


def _offline(folder: Path) -> Decision:
    results = parse_artifacts(iter_dir_files(folder))
    ev = evidence_from_artifacts(results, environment="production", repository="o/r", sha="0" * 40, created_at=NOW)
    return evaluate(ev, default_policy(), "production", NOW, scope=OFFLINE_SCOPE)


def _security(critical: int = 0, high: int = 0, medium: int = 0, low: int = 0) -> Evidence:
    counts = {k: v for k, v in {"critical": critical, "high": high, "medium": medium, "low": low}.items() if v}
    return clean_evidence(security={"counts": counts, "sources": {"dependabot": "ok"}})


# --- dimension scores --------------------------------------------------------------------------


def test_a_dimension_without_evidence_has_no_score() -> None:
    not_scanned = clean_evidence(security={"availability": "not_configured", "reason": "no scanning", "counts": {}})
    d = _decide(not_scanned)
    assert d.dimensions["security"].score is None
    assert "| security | n/a |" in check_run_markdown(d)
    assert re.search(r"security\s+n/a", render_text(d))


def test_security_score_falls_with_more_and_worse_findings() -> None:
    scores = [
        _decide(_security(**counts)).dimensions["security"].score
        for counts in ({}, {"low": 3}, {"medium": 11}, {"high": 1}, {"high": 5}, {"critical": 1},
                       {"critical": 1, "high": 5}, {"critical": 19, "high": 115})
    ]  # fmt: skip
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True), scores
    assert scores[0] == 100 and scores[-1] is not None and scores[-1] < 10


def test_no_scanning_and_many_criticals_no_longer_score_alike() -> None:
    not_scanned = _decide(clean_evidence(security={"availability": "not_configured", "reason": "off", "counts": {}}))
    riddled = _decide(_security(critical=19, high=115))
    assert not_scanned.dimensions["security"].score is None
    assert (riddled.dimensions["security"].score or 0) < 10


def test_corpus_vulnerabilities_score_low_and_an_empty_scan_scores_full(corpus: Path, tmp_path: Path) -> None:
    trivy = _offline(corpus / "artifacts" / "vulnerabilities")
    assert trivy.evidence.security.count("critical") >= 4
    assert (trivy.dimensions["security"].score or 0) < 10
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(corpus / "artifacts" / "sarif" / "sarif-tutorials" / "ExceptionalConditions" / "One run empty results.sarif",
                clean / "scan.sarif")  # fmt: skip
    assert _offline(clean).dimensions["security"].score == 100


def test_readiness_is_unknown_without_any_scored_evidence(tmp_path: Path) -> None:
    d = _offline(tmp_path)
    assert d.readiness_score is None and d.verdict == "escalate"
    assert "readiness n/a" in check_run_markdown(d).splitlines()[0]


# --- confidence --------------------------------------------------------------------------------


def test_an_empty_folder_has_no_confidence(tmp_path: Path) -> None:
    d = _offline(tmp_path)
    assert d.confidence == 0.0
    assert "confidence 0%" in render_text(d).splitlines()[0]


def test_nothing_collected_means_zero_confidence() -> None:
    assert _decide(bare_evidence()).confidence == 0.0


def test_full_confidence_only_when_every_source_was_read() -> None:
    everything = clean_evidence(performance=PERF)
    assert _decide(everything).confidence == 1.0
    for part in ("checks", "tests", "coverage", "security", "performance", "change", "operational"):
        for availability in ("not_configured", "unavailable"):
            missing = everything.model_copy(update={part: type(getattr(everything, part))(availability=availability)})
            assert _decide(missing).confidence < 1.0, (part, availability)


def test_unknown_findings_lower_the_confidence() -> None:
    no_overall = clean_evidence(performance={"tool": "k6", "overall": None})
    assert _decide(no_overall).confidence < _decide(clean_evidence(performance=PERF)).confidence


def test_offline_confidence_counts_only_what_artifacts_can_hold(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "all"
    folder.mkdir()
    for rel in ("junit/go-junit-report/019-report.xml", "coverage/reportgenerator-testprojects/C++/Reports/lcov.info",
                "sarif/sarif-tutorials/ExceptionalConditions/One run empty results.sarif"):  # fmt: skip
        shutil.copy(corpus / "artifacts" / rel, folder / Path(rel).name)
    shutil.copy(corpus / "artifacts" / "performance" / "jmeter" / "statistics" / "2022-05-13T08-25-03_3dafce4190.json",
                folder / "statistics.json")  # fmt: skip
    assert _offline(folder).confidence == 1.0
    (folder / "statistics.json").unlink()
    assert 0 < _offline(folder).confidence < 1.0


# --- sentences ---------------------------------------------------------------------------------


def test_strategy_claims_nothing_about_an_unknown_change() -> None:
    ev = clean_evidence(change={"availability": "unavailable", "reason": "compare failed"})
    ev = ev.model_copy(update={"change": type(ev.change)(availability="unavailable", reason="compare failed")})
    s = _decide(ev).strategy
    assert s.name == "direct"
    assert "small change" not in s.reason and "no migration" not in s.reason and "no regression" not in s.reason
    assert "change size unknown" in s.reason and "migrations unknown" in s.reason
    assert "performance not measured" in s.reason


def test_strategy_states_the_facts_it_has() -> None:
    s = _decide(clean_evidence(performance=PERF)).strategy
    assert "115 lines" in s.reason and "no database migration" in s.reason
    assert "no notable performance regression" in s.reason


def _headings_have_content(lines: list[str], heading: re.Pattern[str]) -> None:
    for i, line in enumerate(lines):
        if heading.match(line):
            rest = [x for x in lines[i + 1 :] if x.strip()]
            assert rest and not heading.match(rest[0]), f"empty heading {line!r}"


def test_no_empty_headings_when_nothing_moved_the_risk(tmp_path: Path) -> None:
    d = _offline(tmp_path)
    assert not d.risk.drivers
    text = render_text(d)
    assert not re.search(r"^Risk drivers[^:\n]*:\s*$", text, re.MULTILINE), text
    _headings_have_content(text.splitlines(), re.compile(r"^\S.*:$"))
    _headings_have_content(check_run_markdown(d).splitlines(), re.compile(r"^#+ "))


@pytest.mark.parametrize("part", ["checks", "change", "operational"])
def test_the_app_path_still_approves_a_clean_release_without_load_tests(part: str) -> None:
    d = _decide(clean_evidence())
    assert d.verdict == "go" and d.readiness_score is not None and d.readiness_score >= 90
    assert 0.6 < d.confidence < 1.0
    missing = clean_evidence().model_copy(update={part: type(getattr(clean_evidence(), part))(availability="unavailable")})
    assert _decide(missing).confidence < d.confidence
