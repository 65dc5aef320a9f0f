"""Without uploaded test reports, the checks that run the tests are the test evidence (counts unknown)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rules.pipeline import evaluate
from rules.policy import default_policy, json_schema, load_policy_text
from rules.report import check_run_markdown
from rules.samples import clean_evidence
from rules.types import Decision, Finding
from scorer.completeness import is_test_check_name
from scorer.evidence import Evidence, TestsPart
from tests.scenarios import LABEL, REPO, release_state
from tests.world import running_world

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
NO_REPORTS = TestsPart(availability="not_configured", reason="no JUnit / xUnit / TRX test reports found in artifacts")


def _checks(*runs: tuple[str, str | None]) -> dict[str, Any]:
    return {"checks": [
        {"name": name, "status": "completed" if conclusion else "in_progress", "conclusion": conclusion}
        for name, conclusion in runs
    ]}  # fmt: skip


def _without_reports(*runs: tuple[str, str | None], required: list[str] | None = None) -> Evidence:
    ev = clean_evidence(checks={**_checks(*runs), "required": required or []})
    return ev.model_copy(update={"tests": NO_REPORTS})


def _finding(d: Decision, rule_id: str) -> Finding:
    return next(f for f in d.findings if f.rule_id == rule_id)


def _decide(ev: Evidence, policy: str | None = None) -> Decision:
    return evaluate(ev, load_policy_text(policy) if policy else default_policy(), "production", NOW)


@pytest.mark.parametrize("name", ["test", "tests", "ci / unit", "pytest (3.12)", "go test ./...", "Run tests", "e2e-tests",
                                  "jest", "unit_tests", "Integration Tests (ubuntu-latest)", "rspec", "cargo test"])
def test_names_of_test_runs_are_recognised(name: str) -> None:  # fmt: skip
    assert is_test_check_name(name)


@pytest.mark.parametrize("name", ["build", "lint", "latest-release", "attestation", "contest-bot", "docs", "deploy"])
def test_other_checks_are_not_test_runs(name: str) -> None:
    assert not is_test_check_name(name)


def test_passing_test_checks_approve_with_tests_counts_unknown() -> None:
    d = _decide(_without_reports(("build", "success"), ("ci / unit", "success"), ("lint", "success")))
    assert d.verdict == "go", d.reasons
    tests = _finding(d, "GNG-TEST-001")
    assert tests.status == "passed" and "tests passed, counts unknown" in tests.message and "ci / unit" in tests.message
    reported = _finding(d, "GNG-TEST-002")
    assert (reported.status, reported.severity) == ("failed", "minor")
    assert "GNG-TEST-002" in [r.rule_id for r in d.recommendations]
    assert d.evidence_read["tests"] == 0.5


def test_test_checks_count_for_less_confidence_than_reports() -> None:
    with_reports = _decide(clean_evidence(checks=_checks(("build", "success"), ("test", "success"))))
    from_checks = _decide(_without_reports(("build", "success"), ("test", "success")))
    nothing = _decide(_without_reports(("build", "success"), ("lint", "success")))
    assert with_reports.confidence > from_checks.confidence > nothing.confidence


def test_the_policy_can_require_reports() -> None:
    policy = "extends: default\nenvironments:\n  production:\n    tests: {require_reports: true}\n"
    d = _decide(_without_reports(("build", "success"), ("test", "success")), policy)
    reported = _finding(d, "GNG-TEST-002")
    assert (reported.status, reported.severity) == ("failed", "major")
    assert d.verdict == "escalate" and any("GNG-TEST-002" in r for r in d.reasons)


def test_an_explicit_severity_for_the_rule_is_kept() -> None:
    policy = "extends: default\nenvironments:\n  \"*\":\n    rules: {GNG-TEST-002: {severity: major}}\n"
    d = _decide(_without_reports(("build", "success"), ("test", "success")), policy)
    assert _finding(d, "GNG-TEST-002").severity == "major" and d.verdict == "escalate"


def test_require_reports_is_in_the_published_schema() -> None:
    tests = json_schema()["$defs"]["TestsSettings"]
    assert tests["properties"]["require_reports"]["type"] == "boolean"
    with pytest.raises(Exception, match="require_report"):
        load_policy_text("environments:\n  production:\n    tests: {require_report: true}\n")


def test_a_failed_test_check_blocks() -> None:
    d = _decide(_without_reports(("build", "success"), ("pytest", "failure")))
    assert d.verdict == "no-go" and "GNG-TEST-001" in d.blocking
    assert "pytest: failure" in _finding(d, "GNG-TEST-001").message


def test_a_running_test_check_is_not_evidence_yet() -> None:
    d = _decide(_without_reports(("build", "success"), ("test", None)))
    assert _finding(d, "GNG-TEST-001").status == "unknown" and d.verdict != "go"


def test_required_checks_stand_in_for_tests_even_without_a_test_name() -> None:
    d = _decide(_without_reports(("ci", "success"), ("lint", "success"), required=["ci"]))
    assert _finding(d, "GNG-TEST-001").status == "passed" and _finding(d, "GNG-TEST-002").severity == "minor"


def test_without_any_test_check_missing_reports_still_escalate() -> None:
    d = _decide(_without_reports(("build", "success"), ("lint", "success")))
    reported = _finding(d, "GNG-TEST-002")
    assert (reported.status, reported.severity) == ("failed", "major") and d.verdict == "escalate"
    assert _finding(d, "GNG-TEST-001").status == "skipped"


def test_reports_when_present_are_the_evidence_not_the_checks() -> None:
    failing = clean_evidence(checks=_checks(("test", "success")),
                             tests={"total": 10, "passed": 9, "failed": 1, "failures": [{"name": "test_x"}]})  # fmt: skip
    d = _decide(failing)
    assert d.verdict == "no-go" and _finding(d, "GNG-TEST-001").value == 1


def test_the_report_says_counts_unknown() -> None:
    text = check_run_markdown(_decide(_without_reports(("build", "success"), ("test", "success"))))
    assert "tests passed, counts unknown" in text


def test_a_repository_that_tests_in_a_check_is_approved_end_to_end(database_url: str) -> None:
    state = release_state(artifacts_ok=False)
    head = state.repo(REPO).branches["main"]
    state.add_check_run(REPO, head, "ci / unit", conclusion="success")
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
        assert gate.answer == "approved", summary[:3000]
        assert "tests passed, counts unknown" in summary and "GNG-TEST-002" in summary
