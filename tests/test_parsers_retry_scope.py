"""A failing test is excused as flaky only by a retry in the same place, never by a pass on another leg.

``retry_scope`` says where a report's tests ran (workflow run, artifact and path, with the marks of a
retry left out); ``TestTally.merge`` matches a failure only with passes of its own scope and says
where a failure that stands passed elsewhere.
"""

from __future__ import annotations

import io
import random

import pytest

from scorer.parsers import ArtifactFile, ArtifactLimits, parse_artifacts
from scorer.parsers.junit import (
    PassCounts,
    TestTally,
    _scoped_key,
    _scoped_keys,
    parse_test_report,
    retry_scope,
)


def _junit(cases: dict[str, str], classname: str = "tests.test_api") -> bytes:
    """A JUnit report: test name -> 'pass', 'fail' or 'error'; a name may repeat as 'name#2' (a rerun)."""
    rows = []
    for key, outcome in cases.items():
        name = key.split("#")[0]
        body = {"pass": "", "fail": '<failure message="boom">trace</failure>', "error": '<error message="e"/>'}[outcome]
        rows.append(f'<testcase classname="{classname}" name="{name}" file="tests/test_api.py" line="3">{body}</testcase>')
    return f'<?xml version="1.0"?><testsuites><testsuite name="s">{"".join(rows)}</testsuite></testsuites>'.encode()


def _zip_file(artifact: str, data: bytes, name: str = "junit.xml", run: str = "run 7") -> ArtifactFile:
    return ArtifactFile(name=name, size=len(data), origin=artifact, run=run,
                        opener=ArtifactFile.from_bytes(name, data).opener)


GREEN = _junit({"test_a": "pass", "test_b": "pass"})
RED = _junit({"test_a": "fail", "test_b": "pass"})


@pytest.mark.parametrize(("one", "other"), [
    (("run 7", "test-results", "junit.xml"), ("run 7", "test-results-rerun", "junit.xml")),
    (("run 7", "test-results-windows", "junit.xml"), ("run 7", "test-results-windows-retry-2", "junit.xml")),
    (("run 7", "test-results", "junit.xml"), ("run 7", "test-results", "junit-rerun.xml")),
    (("run 7", "test-results", "attempt-1/junit.xml"), ("run 7", "test-results", "attempt-2/junit.xml")),
    (("run 7", "test-results", "reports/junit.xml"), ("run 7", "test-results_Attempt_3", "reports/rerun/junit.xml")),
    (("", "", "test-results/junit.xml"), ("", "", "test-results-rerun/junit.xml")),
])
def test_a_retry_shares_the_scope_of_what_it_retries(one, other) -> None:
    assert retry_scope(*one) == retry_scope(*other)


@pytest.mark.parametrize(("one", "other"), [
    (("run 7", "test-results-linux", "junit.xml"), ("run 7", "test-results-windows", "junit.xml")),
    (("run 7", "test-results", "junit.xml"), ("run 8", "test-results", "junit.xml")),  # another workflow run
    (("run 7", "test-results", "linux/junit.xml"), ("run 7", "test-results", "windows/junit.xml")),
    (("run 7", "test-results", "junit-unit.xml"), ("run 7", "test-results", "junit-api.xml")),
    (("run 7", "test-results-1", "junit.xml"), ("run 7", "test-results-2", "junit.xml")),  # shards, not attempts
    (("", "", "job1/junit.xml"), ("", "", "job2/junit.xml")),
])
def test_other_legs_jobs_and_runs_are_other_scopes(one, other) -> None:
    assert retry_scope(*one) != retry_scope(*other)


def test_a_failure_on_one_matrix_leg_with_a_pass_on_another_is_a_failure_of_that_leg() -> None:
    part = parse_artifacts([_zip_file("test-results-linux", GREEN), _zip_file("test-results-windows", RED)]).tests
    assert (part.total, part.passed, part.failed) == (4, 3, 1)
    assert part.flaky == []
    [failure] = part.failures
    assert (failure.name, failure.outcome, failure.file, failure.line) == ("test_a", "failed", "tests/test_api.py", 3)
    assert failure.where == "fails on test-results-windows, passes on test-results-linux"


def test_the_order_of_the_reports_does_not_matter() -> None:
    part = parse_artifacts([_zip_file("test-results-windows", RED), _zip_file("test-results-linux", GREEN)]).tests
    assert part.failed == 1 and part.failures[0].where == "fails on test-results-windows, passes on test-results-linux"


def test_several_legs_where_it_passed_are_named() -> None:
    files = [_zip_file("test-results-windows", RED)] + [_zip_file(f"test-results-{os}", GREEN)
                                                        for os in ("linux", "macos", "alpine", "arm")]
    part = parse_artifacts(files).tests
    assert part.failures[0].where == ("fails on test-results-windows, passes on test-results-linux, "
                                      "test-results-macos and 2 more")


def test_legs_inside_one_artifact_are_named_by_their_files() -> None:
    part = parse_artifacts([_zip_file("test-results", GREEN, "linux/junit.xml"),
                            _zip_file("test-results", RED, "windows/junit.xml")]).tests
    assert part.failed == 1 and part.flaky == []
    assert part.failures[0].where == "fails on test-results:windows/junit.xml, passes on test-results:linux/junit.xml"


def test_the_same_artifact_of_another_workflow_run_is_another_leg() -> None:
    part = parse_artifacts([_zip_file("test-results", GREEN, run="run 7"),
                            _zip_file("test-results", RED, run="run 8")]).tests
    assert part.failed == 1 and part.flaky == []


def test_a_rerun_in_the_same_report_file_is_flaky() -> None:
    # pytest-rerunfailures and Gradle's test-retry write the failed attempt and the passing retry in one file
    rerun = _junit({"test_a": "fail", "test_a#2": "pass", "test_b": "pass"})
    part = parse_artifacts([_zip_file("test-results-linux", GREEN), _zip_file("test-results-windows", rerun)]).tests
    assert (part.total, part.passed, part.failed) == (4, 4, 0)
    [flaky] = part.flaky
    assert flaky.name == "test_a" and flaky.where == "fails, then passes on a retry in test-results-windows:junit.xml"


def test_a_re_run_attempt_uploading_the_same_artifact_again_is_a_retry() -> None:
    part = parse_artifacts([_zip_file("test-results", RED), _zip_file("test-results", GREEN)]).tests
    assert (part.failed, [c.name for c in part.flaky]) == (0, ["test_a"])
    assert part.flaky[0].where == "fails, then passes on a retry in test-results:junit.xml"


def test_an_artifact_named_as_a_rerun_excuses_only_the_leg_it_reruns() -> None:
    rerun = _junit({"test_a": "pass"})
    red_linux = _junit({"test_a": "fail", "test_b": "pass", "test_c": "fail"})
    part = parse_artifacts([_zip_file("test-results-linux", red_linux), _zip_file("test-results-windows", RED),
                            _zip_file("test-results-windows-rerun", rerun)]).tests
    assert [(c.name, c.where) for c in part.flaky] == [
        ("test_a", "fails in test-results-windows:junit.xml, passes on a retry in test-results-windows-rerun:junit.xml")]
    assert [(c.name, c.where) for c in part.failures] == [
        ("test_a", "fails on test-results-linux, passes on test-results-windows"), ("test_c", "")]
    assert (part.total, part.passed, part.failed) == (5, 3, 2)


def test_a_rerun_failing_again_stays_a_failure() -> None:
    part = parse_artifacts([_zip_file("test-results", RED), _zip_file("test-results-rerun", RED)]).tests
    assert part.flaky == [] and [c.name for c in part.failures] == ["test_a"] and part.failed == 2


def test_an_error_on_one_leg_is_named_like_a_failure() -> None:
    errored = _junit({"test_a": "error", "test_b": "pass"})
    part = parse_artifacts([_zip_file("test-results-linux", GREEN), _zip_file("test-results-windows", errored)]).tests
    assert (part.errored, part.failures[0].outcome) == (1, "errored")
    assert part.failures[0].where == "fails on test-results-windows, passes on test-results-linux"


def test_a_test_marked_flaky_by_its_producer_says_where() -> None:
    surefire = (b'<testsuite name="s"><testcase classname="c" name="t"><flakyFailure message="once"/></testcase>'
                b"</testsuite>")
    part = parse_artifacts([_zip_file("surefire-reports", surefire, "TEST-c.xml")]).tests
    assert [(c.name, c.where) for c in part.flaky] == [
        ("t", "fails, then passes on a retry in surefire-reports:TEST-c.xml")]


def test_a_local_folder_of_downloaded_artifacts_keeps_the_legs_apart() -> None:
    # actions/download-artifact puts each artifact in a folder of its name; `gonogo assess --artifacts DIR`
    part = parse_artifacts([ArtifactFile.from_bytes("test-results-linux/junit.xml", GREEN),
                            ArtifactFile.from_bytes("test-results-windows/junit.xml", RED)]).tests
    assert part.failed == 1 and part.failures[0].where == (
        "fails on test-results-windows/junit.xml, passes on test-results-linux/junit.xml")


def test_a_merged_tally_is_not_merged_again() -> None:
    merged = TestTally()
    merged.merge(parse_test_report(io.BytesIO(GREEN), "a.xml"), "a")
    with pytest.raises(ValueError, match="one report file"):
        TestTally().merge(merged, "b")


def test_flaky_count_follows_the_scopes() -> None:
    merged = TestTally()
    merged.merge(parse_test_report(io.BytesIO(RED), "junit.xml"), retry_scope("run 7", "test-results-windows", "junit.xml"))
    merged.merge(parse_test_report(io.BytesIO(GREEN), "junit.xml"), retry_scope("run 7", "test-results-linux", "junit.xml"))
    assert merged.flaky_count == 0
    merged.merge(parse_test_report(io.BytesIO(GREEN), "junit.xml"),
                 retry_scope("run 7", "test-results-windows-rerun", "junit.xml"))
    assert merged.flaky_count == 1


def test_scoped_ids_agree_between_python_and_numpy() -> None:
    import numpy as np

    rng = random.Random(3)
    keys = [rng.randrange(-(2**63), 2**63) for _ in range(500)] + [0, -1, 2**63 - 1, -(2**63)]
    for scope in (hash("a\x00b\x00c"), 0, -1, 2**63 - 1):
        vector = _scoped_keys(np.array(keys, dtype=np.int64), scope).tolist()
        assert vector == [_scoped_key(k, scope) for k in keys]
        assert len(set(vector)) == len(keys)  # no two tests of one scope share an id


@pytest.mark.parametrize("small_ids", [4096, 8])  # the dict, and the numpy arrays
def test_scoped_pass_counts_are_the_same_in_the_dict_and_the_arrays(small_ids: int) -> None:
    rng = random.Random(small_ids)
    keys = [rng.randrange(-(2**63), 2**63) for _ in range(40)]
    one_file = PassCounts(1000, small_ids)
    one_file.pending.extend(keys + keys[:5])
    merged = PassCounts(1000, small_ids)
    merged.merge(one_file, scope=hash("leg"))
    assert merged.counts_of([_scoped_key(k, hash("leg")) for k in keys]) == [2] * 5 + [1] * 35
    assert merged.counts_of(keys) == [0] * 40  # a test's plain id is not its id in a scope


def test_past_the_cap_a_failure_is_not_excused() -> None:
    # the scoped passes are capped like the plain ones; an id not remembered leaves its failure standing
    limits = ArtifactLimits(max_tracked_tests=1)
    part = parse_artifacts([ArtifactFile.from_bytes("junit.xml", _junit({"test_z": "pass", "test_a": "pass"}), limits),
                            ArtifactFile.from_bytes("junit-rerun.xml", RED, limits)], limits).tests
    assert [c.name for c in part.failures] == ["test_a"] and part.flaky == []
