"""Every catalog rule: a passing and a failing fixture, stable metadata, honest unknown/skipped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.catalog import CATALOG, RULES_BY_ID
from rules.policy import RULE_TAKES_THRESHOLD
from rules.samples import bare_evidence
from rules.types import DIMENSIONS, RuleStatus
from scorer.assessment import Assessment

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
ID_PATTERN = re.compile(r"^GNG-(TEST|QUAL|SEC|PERF|OPS|CHG)-\d{3}$")
DIM_OF_PREFIX = {"TEST": "quality", "QUAL": "quality", "SEC": "security", "PERF": "performance", "OPS": "operational", "CHG": "change"}


def _case(rule_id: str, which: str) -> dict[str, Any]:
    data = yaml.safe_load((FIXTURES / f"{rule_id}.yaml").read_text())
    return data[which]


def _assess(parts: dict[str, Any]) -> Assessment:
    return Assessment(evidence=bare_evidence(**parts))


def test_catalog_has_at_least_30_rules_over_five_dimensions() -> None:
    assert len(CATALOG) >= 30
    assert {r.dimension for r in CATALOG} == set(DIMENSIONS)


@pytest.mark.parametrize("rule", CATALOG, ids=lambda r: r.id)
def test_rule_metadata_is_complete(rule: Any) -> None:
    assert ID_PATTERN.match(rule.id)
    assert rule.dimension == DIM_OF_PREFIX[rule.id.split("-")[1]]
    assert rule.title.startswith("Ensure ")
    assert rule.severity in ("blocker", "major", "minor")
    assert len(rule.why) > 20 and len(rule.fix) > 20


def test_every_rule_has_a_fixture_and_no_fixture_is_orphaned() -> None:
    files = {p.stem for p in FIXTURES.glob("*.yaml")}
    assert files == set(RULES_BY_ID)


@pytest.mark.parametrize("rule", CATALOG, ids=lambda r: r.id)
def test_rule_passes_on_its_passing_fixture(rule: Any) -> None:
    result = rule.evaluate(_assess(_case(rule.id, "pass")))
    assert result.status is RuleStatus.PASSED, result.message
    assert result.message


@pytest.mark.parametrize("rule", CATALOG, ids=lambda r: r.id)
def test_rule_fails_on_its_failing_fixture(rule: Any) -> None:
    result = rule.evaluate(_assess(_case(rule.id, "fail")))
    assert result.status is RuleStatus.FAILED, result.message
    assert result.message
    if rule.threshold is not None and result.threshold is not None:
        assert result.threshold == rule.threshold
        assert result.value is not None


@pytest.mark.parametrize("rule", CATALOG, ids=lambda r: r.id)
def test_rule_is_unknown_when_its_evidence_is_unavailable(rule: Any) -> None:
    # Parts from the failing fixture, all of them unreadable: nothing may fail or pass on no evidence.
    parts = {name: {"availability": "unavailable", "reason": "HTTP 502"} for name in _case(rule.id, "fail")}
    result = rule.evaluate(_assess(parts))
    assert result.status is RuleStatus.UNKNOWN
    assert "502" in result.message


def test_threshold_override_changes_the_outcome() -> None:
    rule = RULES_BY_ID["GNG-PERF-002"]
    parts = _case("GNG-PERF-002", "fail")  # +30 %
    assert rule.evaluate(_assess(parts)).status is RuleStatus.FAILED
    relaxed = rule.evaluate(_assess(parts), threshold=40)
    assert relaxed.status is RuleStatus.PASSED and relaxed.threshold == 40


def test_not_configured_performance_is_skipped_not_unknown() -> None:
    a = _assess({"performance": {"availability": "not_configured", "reason": "no load test"}})
    for rule in CATALOG:
        if rule.dimension == "performance":
            assert rule.evaluate(a).status is RuleStatus.SKIPPED


def test_failing_tests_rule_lists_the_failing_tests_with_location() -> None:
    result = RULES_BY_ID["GNG-TEST-001"].evaluate(_assess(_case("GNG-TEST-001", "fail")))
    assert result.value == 2
    assert result.details == ["tests.test_auth.test_login (tests/test_auth.py:12)"]


def test_pending_required_check_is_unknown_not_failed() -> None:
    parts = {"checks": {"required": ["build"], "checks": [{"name": "build", "status": "in_progress"}]}}
    assert RULES_BY_ID["GNG-QUAL-002"].evaluate(_assess(parts)).status is RuleStatus.UNKNOWN


def test_insignificant_regression_passes() -> None:
    parts = {"performance": {"overall": {"name": "all", "regression_pct": 30, "significant": False}}}
    assert RULES_BY_ID["GNG-PERF-002"].evaluate(_assess(parts)).status is RuleStatus.PASSED


def test_policy_rule_table_matches_the_catalog() -> None:
    # the policy validates rule ids against its own table so that `policy validate` loads no rules
    assert RULE_TAKES_THRESHOLD == {r.id: r.threshold is not None for r in CATALOG}, (
        "update RULE_TAKES_THRESHOLD in rules/policy.py to the catalog's ids and thresholds"
    )
