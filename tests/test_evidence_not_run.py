"""A test or check that did not run is no evidence that the release works.

A report of skipped tests only, a required check that GitHub reports as ``skipped`` (a job whose ``if:`` was
false) or ``neutral``, and a skipped test job standing in for missing reports each said nothing about the
commit; each used to count as a pass and approve. Driven through the running app over HTTP against the sandbox.
"""

from __future__ import annotations

import pytest

from tests.scenarios import LABEL, REPO, cobertura, decide, junit, release_state, stored, zipped
from tests.world import running_world


def _decided(database_url, state):
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    return gate, ev, decision, {f["rule_id"]: f for f in decision["findings"]}


def _ci_run(state):
    _, release = state.deployment(LABEL)
    return next(r for r in state.repo(REPO).workflow_runs.values() if r.head_sha == release.sha)


def test_a_report_of_skipped_tests_only_is_a_report_that_no_test_ran(database_url):
    state = release_state(artifacts_ok=False)
    ci = _ci_run(state)
    state.add_artifact(REPO, ci.id, "test-results", zipped({"junit-unit.xml": junit(150, skipped=150)}))
    state.add_artifact(REPO, ci.id, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    gate, ev, decision, findings = _decided(database_url, state)
    assert (ev.tests.total, ev.tests.skipped) == (150, 150)
    assert gate.answer != "approved" and decision["verdict"] == "escalate", decision["reasons"]
    reported = findings["GNG-TEST-002"]
    assert reported["status"] == "failed" and reported["severity"] == "major"
    assert reported["message"] == "tests run 0, below the minimum of 1 (150 reported, 150 skipped)"


def test_skipped_tests_beside_tests_that_ran_still_count_the_ones_that_ran(database_url):
    gate, _, decision, findings = _decided(database_url, release_state())
    assert gate.answer == "approved", decision["reasons"]
    assert findings["GNG-TEST-002"]["message"] == "tests run 148, meets the minimum of 1 (150 reported, 2 skipped)"


@pytest.mark.parametrize("conclusion", ["skipped", "neutral"])
def test_a_required_check_that_did_not_run_is_not_a_pass(database_url, conclusion):
    state = release_state(policy="environments:\n  production:\n    required_checks: [integration]\n")
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "integration", conclusion=conclusion)
    gate, ev, decision, findings = _decided(database_url, state)
    assert [c.conclusion for c in ev.checks.checks if c.name == "integration"] == [conclusion]
    assert gate.answer != "approved" and decision["verdict"] == "escalate", decision["reasons"]
    required = findings["GNG-QUAL-002"]
    assert required["status"] == "unknown"
    assert required["message"] == f"required checks did not run: integration ({conclusion})"
    assert findings["GNG-QUAL-001"]["status"] == "passed"  # not a failure either: a reviewer decides


def test_a_required_check_that_ran_and_passed_still_passes(database_url):
    state = release_state(policy="environments:\n  production:\n    required_checks: [integration]\n")
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "integration", conclusion="success")
    gate, _, decision, findings = _decided(database_url, state)
    assert findings["GNG-QUAL-002"]["status"] == "passed"
    assert gate.answer == "approved", decision["reasons"]


def test_a_skipped_test_job_does_not_stand_in_for_missing_test_reports(database_url):
    state = release_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "test", conclusion="skipped")
    gate, ev, decision, findings = _decided(database_url, state)
    assert ev.tests.availability == "not_configured"
    assert gate.answer != "approved" and decision["verdict"] == "escalate", decision["reasons"]
    tests_pass = findings["GNG-TEST-001"]
    assert tests_pass["status"] == "unknown"
    assert tests_pass["message"] == "no test reports, and the test checks did not run: test (skipped)"
    # no test check ran, so nothing relaxes the missing reports to a recommendation
    assert (findings["GNG-TEST-002"]["status"], findings["GNG-TEST-002"]["severity"]) == ("failed", "major")
    assert decision["evidence_read"]["tests"] == 0


def test_a_test_job_that_ran_stands_in_and_the_skipped_one_is_named(database_url):
    state = release_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "test (linux)", conclusion="success")
    state.add_check_run(REPO, release.sha, "test (windows)", conclusion="skipped")
    _, _, decision, findings = _decided(database_url, state)
    assert findings["GNG-TEST-001"]["status"] == "passed"
    assert findings["GNG-TEST-001"]["message"] == (
        "tests passed, counts unknown: no test reports, test checks test (linux) succeeded; "
        "did not run: test (windows) (skipped)")
    assert (findings["GNG-TEST-002"]["status"], findings["GNG-TEST-002"]["severity"]) == ("failed", "minor")
    assert decision["evidence_read"]["tests"] == 0.5
