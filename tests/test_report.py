"""The check-run report, its size cap, annotations and the protection-rule comment."""

from __future__ import annotations

from datetime import UTC, datetime

from rules.pipeline import evaluate
from rules.policy import default_policy, load_policy_text
from rules.report import (
    CHECK_RUN_LIMIT,
    COMMENT_LIMIT,
    annotations,
    batches,
    check_run_markdown,
    headline,
    protection_comment,
    render_text,
)
from rules.samples import clean_evidence
from rules.types import Decision
from scorer.assessment import ModelQuality, RiskEstimate

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
URL = "https://github.com/octo/shop/runs/123456789"


def _failing(n_tests: int = 3, n_vulns: int = 2) -> Decision:
    failures = [{"name": f"test_{i}", "classname": "tests.test_cart", "file": "tests/test_cart.py", "line": 10 + i,
                 "message": f"AssertionError {i}"} for i in range(n_tests)]  # fmt: skip
    vulns = [{"source": "code_scanning", "rule_id": "py/sql-injection", "severity": "critical", "path": "src/db.py",
              "line": 5 + i, "title": "SQL built from user input"} for i in range(n_vulns)]  # fmt: skip
    vulns.append({"source": "dependabot", "rule_id": "GHSA-1", "severity": "high", "package": "requests"})
    ev = clean_evidence(
        tests={"total": 100 + n_tests, "passed": 100, "failed": n_tests, "failures": failures},
        security={"findings": vulns, "counts": {"critical": n_vulns, "high": 1}},
    )
    return evaluate(ev, default_policy(), "production", NOW)


def test_first_line_has_verdict_score_risk_confidence() -> None:
    d = _failing()
    first = check_run_markdown(d).splitlines()[0]
    assert "NO-GO" in first and "readiness" in first and "risk" in first and "confidence" in first
    assert "rule-based estimate" in first


def test_report_sections() -> None:
    text = check_run_markdown(_failing())
    for heading in ("### Dimensions", "### Blocking findings", "### What would change the outcome", "### Top risk drivers",
                    "### Rollout strategy", "<details><summary>Findings needing attention", "Evidence provenance"):  # fmt: skip
        assert heading in text
    assert "GNG-TEST-001" in text and "Fix:" in text
    assert "| quality |" in text


def test_model_version_is_named_when_a_model_gave_the_risk() -> None:
    d = evaluate(clean_evidence(), default_policy(), "production", NOW,
                 risk=RiskEstimate(probability=0.05, source="model", model_version="gbm-2025-06-01"))  # fmt: skip
    assert "model gbm-2025-06-01" in headline(d)


def test_risk_section_says_how_good_the_model_is() -> None:
    """A reviewer sees the model's held-out catch rate at 10 % gated and its calibration error beside the number."""
    quality = ModelQuality(deployments=412, roc_auc=0.74, catch_rate_10=0.31, ece=0.021)
    d = evaluate(clean_evidence(), default_policy(), "production", NOW,
                 risk=RiskEstimate(probability=0.05, source="model", model_version="m-1", quality=quality))  # fmt: skip
    text = check_run_markdown(d)
    assert ("On its 412 latest held-out deployments, gating the riskiest 10 % caught 31% of failures; "
            "calibration error (ECE) 0.021.") in text
    unmeasured = evaluate(clean_evidence(), default_policy(), "production", NOW,
                          risk=RiskEstimate(probability=0.05, source="prior", model_version="p-1"))  # fmt: skip
    assert "held-out" not in check_run_markdown(unmeasured)


def test_dry_run_report_says_what_it_would_have_done() -> None:
    d = evaluate(_failing().evidence, load_policy_text("mode: dry-run\n"), "production", NOW)
    assert "DRY-RUN: would be ⛔ NO-GO" in check_run_markdown(d).splitlines()[0]
    comment = protection_comment(d, URL)
    assert "would be NO-GO" in comment and URL in comment


def test_report_stays_under_the_limit_and_says_what_was_cut() -> None:
    d = _failing()
    many = [f.model_copy(update={"message": "x" * 280, "rule_id": f"{f.rule_id}"}) for f in d.findings] * 80
    huge = d.model_copy(update={"findings": many})
    text = check_run_markdown(huge)
    assert len(text) <= CHECK_RUN_LIMIT
    assert "Report truncated to fit GitHub's size limit" in text
    assert "### Blocking findings" in text and "### Rollout strategy" in text  # the important part survives
    small = check_run_markdown(d, limit=6000)
    assert len(small) <= 6000 and "truncated" in small


def test_untruncated_report_has_no_truncation_note() -> None:
    assert "truncated" not in check_run_markdown(_failing())


def test_annotations_for_failing_tests_and_security_findings() -> None:
    items = annotations(_failing(n_tests=2, n_vulns=1))
    assert len(items) == 3  # the dependabot finding has no path and line
    test = items[0]
    assert set(test) == {"path", "start_line", "end_line", "annotation_level", "message", "title"}
    assert (test["path"], test["start_line"], test["annotation_level"]) == ("tests/test_cart.py", 10, "failure")
    assert "tests.test_cart.test_0" in test["title"]
    sec = items[-1]
    assert (sec["path"], sec["start_line"], sec["annotation_level"]) == ("src/db.py", 5, "failure")


def test_annotations_batch_by_fifty() -> None:
    items = annotations(_failing(n_tests=120, n_vulns=0))
    sizes = [len(b) for b in batches(items)]
    assert sizes == [50, 50, 20]
    assert batches([], 50) == []


def test_protection_comment_is_capped_and_keeps_the_link() -> None:
    d = _failing()
    long = d.model_copy(update={"reasons": ["r" * 5000]})
    comment = protection_comment(long, URL)
    assert len(comment) <= COMMENT_LIMIT and comment.endswith(URL)
    assert comment.splitlines()[0].startswith("gonogo: NO-GO for production")


def test_plain_text_rendering() -> None:
    text = render_text(_failing())
    assert "NO-GO" in text and "Blocking findings:" in text and "GNG-SEC-001" in text
