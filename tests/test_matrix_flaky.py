"""A test failing on one matrix leg and passing on another is a failure of that leg, not a flaky test.

gonogo merged every test report and excused any failure the same test passed somewhere else. Two
matrix artifacts, ``test-results-linux`` (all passing) and ``test-results-windows`` (three failures),
were approved with "0 failing tests" and three "flaky" ones: a release broken on Windows went out
whenever the test job itself did not fail (continue-on-error, ``|| true``, a separate upload job).

A failure is excused only by a retry of the same test in the same place: the same report file (a
rerun plugin), the same artifact of the same workflow run uploaded again (a re-run attempt), or an
artifact or file named as its rerun (``test-results-windows-rerun``). Driven through the running app
over HTTP with signed webhooks against the GitHub sandbox.
"""

from __future__ import annotations

from tests.scenarios import LABEL, REPO, cobertura, decide, junit, release_state, stored, zipped
from tests.world import running_world


def _decided(database_url, state):
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    return gate, ev, decision, {f["rule_id"]: f for f in decision["findings"]}


def _release_with(artifacts: list[tuple[str, dict[str, str]]], *, other_run: list[tuple[str, dict[str, str]]] = ()):
    """The release with these test artifacts (and a coverage report) on its CI run, ``other_run`` on a second run."""
    state = release_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    ci = next(r for r in state.repo(REPO).workflow_runs.values() if r.head_sha == release.sha)
    for name, files in artifacts:
        state.add_artifact(REPO, ci.id, name, zipped(files))
    state.add_artifact(REPO, ci.id, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    if other_run:
        nightly = state.add_workflow_run(REPO, release.sha, name="Windows", path=".github/workflows/windows.yml")
        for name, files in other_run:
            state.add_artifact(REPO, nightly.id, name, zipped(files))
    return state


def test_failures_on_one_matrix_leg_block_though_the_other_leg_passes(database_url):
    state = _release_with([("test-results-linux", {"junit.xml": junit(150)}),
                           ("test-results-windows", {"junit.xml": junit(150, failed=3)})])
    gate, ev, decision, findings = _decided(database_url, state)
    assert gate.answer != "approved" and decision["verdict"] == "no-go", decision["reasons"]
    assert (ev.tests.total, ev.tests.passed, ev.tests.failed) == (300, 297, 3)
    assert ev.tests.flaky == []
    failing = findings["GNG-TEST-001"]
    assert failing["status"] == "failed" and failing["value"] == 3, failing
    assert failing["details"][0] == (
        "tests.test_unit.test_case_0 (tests/test_unit.py:10): fails on test-results-windows, passes on "
        "test-results-linux")
    assert [c.where for c in ev.tests.failures] == ["fails on test-results-windows, passes on test-results-linux"] * 3


def test_the_same_artifact_name_from_another_workflow_run_is_another_leg(database_url):
    # two workflows on the commit may both call their artifact "test-results"; only the run tells them apart
    state = _release_with([("test-results", {"junit.xml": junit(150)})],
                          other_run=[("test-results", {"junit.xml": junit(150, failed=2)})])
    gate, ev, decision, findings = _decided(database_url, state)
    assert (ev.tests.failed, ev.tests.flaky) == (2, [])
    assert gate.answer != "approved" and findings["GNG-TEST-001"]["status"] == "failed", decision["reasons"]
    assert ev.tests.failures[0].where == "fails on test-results:junit.xml, passes on test-results:junit.xml"


def test_a_re_run_attempt_uploading_the_same_artifact_again_is_a_retry(database_url):
    state = _release_with([("test-results", {"junit.xml": junit(150, failed=3)}),
                           ("test-results", {"junit.xml": junit(150)})])
    _, ev, decision, findings = _decided(database_url, state)
    assert (ev.tests.total, ev.tests.passed, ev.tests.failed) == (297, 297, 0)  # passes are not deduplicated
    assert findings["GNG-TEST-001"]["status"] == "passed", decision["reasons"]
    assert [c.name for c in ev.tests.flaky] == ["test_case_0", "test_case_1", "test_case_2"]
    flaky = findings["GNG-TEST-003"]
    assert flaky["status"] == "failed" and flaky["details"][0] == (
        "tests.test_unit.test_case_0: fails, then passes on a retry in test-results:junit.xml")
    assert flaky["message"].endswith(  # the count says where the first one failed and passed
        "(tests.test_unit.test_case_0: fails, then passes on a retry in test-results:junit.xml; 2 more in the details)")


def test_an_artifact_named_as_the_rerun_of_the_failing_leg_excuses_its_failures_only(database_url):
    state = _release_with([
        ("test-results-linux", {"junit.xml": junit(150, failed=1)}),
        ("test-results-windows", {"junit.xml": junit(150, failed=3)}),
        ("test-results-windows-rerun", {"junit.xml": junit(3)}),
    ])
    gate, ev, decision, findings = _decided(database_url, state)
    # windows' three failures passed on their rerun; linux's failure had no retry on linux
    assert [c.name for c in ev.tests.flaky] == ["test_case_0", "test_case_1", "test_case_2"]
    assert ev.tests.flaky[0].where == (
        "fails in test-results-windows:junit.xml, passes on a retry in test-results-windows-rerun:junit.xml")
    assert [(c.name, c.where) for c in ev.tests.failures] == [
        ("test_case_0", "fails on test-results-linux, passes on test-results-windows")]
    assert gate.answer != "approved" and findings["GNG-TEST-001"]["status"] == "failed", decision["reasons"]
