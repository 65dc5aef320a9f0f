"""Evidence that reads as clean but says nothing: a failed scan, a hidden failure. It never lets a release through.

Each end-to-end test drives the running app over HTTP against the sandbox (signed webhook in, githubkit out)
and reads what the app stored for the deployment; the parser cases read the bytes directly.
"""

from __future__ import annotations

import io
import json

import pytest

from scorer.evidence import Availability
from scorer.parsers import ArtifactRejected
from scorer.parsers.security import parse_sarif
from tests.scenarios import LABEL, REPO, decide, release_state, stored, zipped
from tests.world import running_world

UNREAD = (Availability.INCOMPLETE, Availability.UNAVAILABLE)
TOOL = {"driver": {"name": "scanner", "rules": [{"id": "R1", "properties": {"security-severity": "9.8"}}]}}


def _ci_run_id(state: object) -> int:
    _, release = state.deployment(LABEL)  # type: ignore[attr-defined]
    return next(r.id for r in state.repo(REPO).workflow_runs.values()  # type: ignore[attr-defined]
                if r.head_sha == release.sha and r.name == "CI")


@pytest.mark.parametrize("run", [
    {"tool": TOOL},  # results absent: SARIF 2.1.0 3.14.23 says it defaults to null
    {"tool": TOOL, "results": None},  # the tool failed to start or to analyse
])
def test_a_sarif_run_without_a_results_array_is_a_failed_scan_not_a_clean_one(run: dict[str, object]) -> None:
    """Before the fix a run whose tool failed (results null or absent) counted as a scan that found nothing."""
    data = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "results": []}, run]}).encode()
    with pytest.raises(ArtifactRejected, match="results are null or absent"):
        parse_sarif(lambda: io.BytesIO(data), "scan.sarif")
    # the deeply nested form goes to the streaming reader: it refuses the same log
    deep = "[" * 3000 + "]" * 3000
    nested = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "properties": {"x": "@"}}, run]})
    nested = nested.replace('"@"', deep).encode()
    with pytest.raises(ArtifactRejected, match="results are null or absent"):
        parse_sarif(lambda: io.BytesIO(nested), "scan.sarif")


def test_a_sarif_run_with_an_empty_results_array_is_still_a_clean_scan() -> None:
    data = json.dumps({"version": "2.1.0", "runs": [{"tool": TOOL, "results": []}]}).encode()
    assert sum(parse_sarif(lambda: io.BytesIO(data), "scan.sarif").counts.values()) == 0


def test_a_scan_whose_tool_failed_never_approves(database_url: str) -> None:
    """The release's SARIF artifact records a scanner that never analysed (``results`` absent).

    Before the fix the report read as a clean scan: the security part was complete and the release approved.
    """
    state = release_state()
    failed_scan = {"version": "2.1.0", "runs": [{"tool": TOOL, "invocations": [{"executionSuccessful": True}]}]}
    state.add_artifact(REPO, _ci_run_id(state), "security-reports", zipped({"scan.sarif": json.dumps(failed_scan)}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.security.availability in UNREAD
    [refused] = [r for r in ev.refused if r.path.endswith("scan.sarif")]
    assert "results are null or absent" in refused.reason


# --- failures a test report counts but lists under no test case ------------------------------------------

# a module that failed before its tests ran (a build or import error): the suite counts it, no test case shows it
BROKEN_SUITE = ('<?xml version="1.0"?><testsuites><testsuite name="api" tests="3" failures="0" errors="0">'
                '<testcase classname="tests.api" name="a"/><testcase classname="tests.api" name="b"/>'
                '<testcase classname="tests.api" name="c"/></testsuite>'
                '<testsuite name="billing" tests="0" failures="0" errors="1" time="0.1"/></testsuites>')
# xUnit.net v2: a fixture's clean-up that threw is listed under <errors>, outside every <test>
XUNIT_CLEANUP_ERROR = (
    '<?xml version="1.0"?><assemblies><assembly name="Api.Tests.dll" total="2" passed="2" failed="0" skipped="0" '
    'errors="1" time="0.5"><errors><error type="class-cleanup" name="Api.Tests.DatabaseFixture">'
    '<failure exception-type="System.InvalidOperationException"><message>connection pool leaked</message>'
    '</failure></error></errors><collection name="c" total="2" passed="2" failed="0" skipped="0">'
    '<test name="Api.Tests.Orders.Lists" type="Api.Tests.Orders" method="Lists" result="Pass" time="0.1"/>'
    '<test name="Api.Tests.Orders.Pages" type="Api.Tests.Orders" method="Pages" result="Pass" time="0.1"/>'
    '</collection></assembly></assemblies>')


@pytest.mark.parametrize(("report", "where"), [
    (BROKEN_SUITE, "billing"), (XUNIT_CLEANUP_ERROR, "connection pool leaked")])
def test_a_failure_counted_outside_every_test_case_is_a_failure(report: str, where: str) -> None:
    """Before the fix the report read as all passed: the failure lived only in an attribute or an <errors> list."""
    from scorer.parsers.junit import parse_test_report

    part = parse_test_report(io.BytesIO(report.encode()), "report.xml").to_part([])
    assert part.failed + part.errored == 1, part
    [failure] = part.failures
    assert where in f"{failure.classname} {failure.name} {failure.message}"


def test_failure_counts_that_disagree_with_listed_failures_are_left_as_listed() -> None:
    """Producers count failure elements or failing test cases: a suite that lists a failure is read as listed."""
    from scorer.parsers.junit import parse_test_report

    report = ('<testsuite name="s" tests="2" failures="3" errors="0"><testcase classname="c" name="a">'
              '<failure message="x"/><failure message="y"/></testcase><testcase classname="c" name="b"/></testsuite>')
    part = parse_test_report(io.BytesIO(report.encode()), "report.xml").to_part([])
    assert (part.total, part.failed, part.errored) == (2, 1, 0)


def test_a_suite_that_failed_outside_its_tests_never_approves(database_url: str) -> None:
    """A test artifact beside the clean ones holds a suite whose set-up failed: before the fix, approved."""
    state = release_state()
    state.add_artifact(REPO, _ci_run_id(state), "test-results-billing", zipped({"junit-billing.xml": BROKEN_SUITE}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.tests.errored == 1
    findings = {f["rule_id"]: f for f in decision["findings"]}
    assert findings["GNG-TEST-001"]["status"] == "failed"


# --- more checks on the commit than gonogo lists -------------------------------------------------------


def test_a_ci_failure_pushed_past_the_listing_by_a_flood_of_statuses_never_approves(database_url: str) -> None:
    """The CI's failure is the oldest of 10,001 statuses on the commit, all the others successes posted after it.

    GitHub lists a commit's statuses newest first. Before the fix gonogo read the first 10,000 without a word about
    the rest: the failure was never seen and the release approved.
    """
    from github_app.evidence import CHECKS_READ

    state = release_state()
    _, release = state.deployment(LABEL)
    state.add_status(REPO, release.sha, "ci/e2e", "failure", creator="ci-bot")
    for i in range(CHECKS_READ):
        state.add_status(REPO, release.sha, f"noise/{i % 20}", "success", creator="dora")
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.checks.availability is Availability.UNAVAILABLE
    assert "more than 10,000 commit statuses" in ev.checks.reason


# --- reports packed inside the artifact -------------------------------------------------------------------


def _gzipped(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode())


@pytest.mark.parametrize("member", ["junit-unit.xml.gz", "test-results.zip", "reports/TEST-api.xml.bz2"])
def test_a_test_report_compressed_inside_the_artifact_never_approves(database_url: str, member: str) -> None:
    """The CI packed its failing JUnit report before uploading it; a test check that passed stands beside it.

    gonogo does not open an archive or a compressed file inside an artifact. Before the fix such a member was
    listed as a binary file nobody reads: the tests part read as "no reports", the test check stood in for them,
    and the release approved with three failing tests in the unread report.
    """
    import bz2

    from tests.scenarios import junit

    report = junit(40, failed=3)
    packed = {".gz": _gzipped(report), ".zip": zipped({"junit.xml": report}),
              ".bz2": bz2.compress(report.encode())}[member[member.rindex("."):]]
    state = release_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "unit tests", conclusion="success")
    state.add_artifact(REPO, _ci_run_id(state), "test-results", zipped({member: packed}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.tests.availability in UNREAD
    [refused] = [r for r in ev.refused if r.path.endswith(member)]
    assert "compressed" in refused.reason


def test_an_archive_not_named_like_a_report_is_only_listed_as_not_understood() -> None:
    from scorer.parsers import ArtifactFile, parse_artifacts

    results = parse_artifacts([ArtifactFile.from_bytes("dist/app-1.2.tar.gz", _gzipped("x" * 400)),
                               ArtifactFile.from_bytes("site/coverage-html.zip", zipped({"index.html": "<html/>"}))])
    assert not results.refused and results.tests.availability is Availability.NOT_CONFIGURED
    assert sorted(f.path for f in results.not_understood) == ["dist/app-1.2.tar.gz", "site/coverage-html.zip"]


# --- a test run that failed as a whole, every listed test passing ---------------------------------------

# dotnet test: the test host crashed after two tests; the run's summary says so, no result is a failure
TRX_HOST_CRASH = (
    '<?xml version="1.0" encoding="utf-8"?><TestRun id="1" xmlns="http://microsoft.com/schemas/VisualStudio/'
    'TeamTest/2010"><Results><UnitTestResult testName="Api.Tests.Orders.Lists" outcome="Passed" '
    'duration="00:00:00.1"/><UnitTestResult testName="Api.Tests.Orders.Pages" outcome="Passed" '
    'duration="00:00:00.1"/></Results><ResultSummary outcome="Failed"><Counters total="40" executed="2" passed="2" '
    'failed="0" error="0" timeout="0" aborted="0"/><RunInfos><RunInfo computerName="runner" outcome="Error">'
    '<Text>The active test run was aborted. Reason: Test host process crashed</Text></RunInfo></RunInfos>'
    '</ResultSummary></TestRun>')
# NUnit 3: a fixture's OneTimeTearDown threw; its tests passed, the fixture and the run failed
NUNIT_TEARDOWN_ERROR = (
    '<?xml version="1.0"?><test-run id="2" testcasecount="2" result="Failed" label="Error" total="2" passed="2" '
    'failed="0"><test-suite type="TestFixture" name="OrdersTests" fullname="Api.OrdersTests" result="Failed" '
    'label="Error" site="TearDown"><failure><message>database left locked</message></failure>'
    '<test-case name="Lists" fullname="Api.OrdersTests.Lists" result="Passed"/>'
    '<test-case name="Pages" fullname="Api.OrdersTests.Pages" result="Passed"/></test-suite></test-run>')


@pytest.mark.parametrize("report", [TRX_HOST_CRASH, NUNIT_TEARDOWN_ERROR])
def test_a_run_that_failed_outside_its_tests_is_a_failure(report: str) -> None:
    """Before the fix both reports read as all passed: only the run's summary said it failed."""
    from scorer.parsers.junit import parse_test_report

    part = parse_test_report(io.BytesIO(report.encode()), "report.xml").to_part([])
    assert part.failed + part.errored == 1, part
    assert "Failed" in part.failures[0].name


# --- a load test that does not report the figure a rule judges ------------------------------------------


def _k6_without(*dropped: str) -> str:
    duration = {"avg": 120.0, "min": 40.0, "med": 100.0, "max": 900.0, "p(90)": 250.0, "p(95)": 300.0}
    metrics = {"http_req_duration": {k: v for k, v in duration.items() if k not in dropped},
               "http_reqs": {"count": 4000, "rate": 60.0}}
    if "http_req_failed" not in dropped:
        metrics["http_req_failed"] = {"passes": 0, "fails": 4000, "value": 0.0}
    return json.dumps({"root_group": {"name": "", "groups": [], "checks": []}, "metrics": metrics})


@pytest.mark.parametrize(("dropped", "rule"), [(("p(95)",), "GNG-PERF-001"), (("http_req_failed",), "GNG-PERF-003")])
def test_a_load_test_that_leaves_out_the_judged_figure_never_approves_past_a_blocker(
        database_url: str, dropped: tuple[str, ...], rule: str) -> None:
    """The k6 summary was configured without p(95) (summaryTrendStats), or without the failed-requests metric.

    Before the fix the rule read the missing figure as "not applicable" (skipped): with the policy making it a
    blocker, a load test that never said how slow or how failing the release was let it through.
    """
    policy = f"environments:\n  production:\n    rules: {{{rule}: {{severity: blocker}}}}\n"
    state = release_state(policy=policy)
    state.add_artifact(REPO, _ci_run_id(state), "perf", zipped({"k6-summary-export.json": _k6_without(*dropped)}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert ev.performance.ok
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    finding = {f["rule_id"]: f for f in decision["findings"]}[rule]
    assert finding["status"] == "unknown" and "do not report" in finding["message"]


def test_a_jest_test_file_that_failed_after_its_tests_passed_is_a_failure() -> None:
    """An afterAll hook threw: Jest marks the file failed, every assertion in it passed.

    Before the fix only a failed file without any assertion result counted: this one read as all passed.
    """
    from scorer.parsers.limits import ArtifactLimits, Deadline
    from scorer.parsers.testformats import parse_jest

    doc = {"numTotalTests": 2, "numFailedTests": 0, "numFailedTestSuites": 1, "success": False, "testResults": [{
        "name": "/src/orders.test.js", "status": "failed",
        "message": "afterAll hook failed: connection pool still open",
        "assertionResults": [{"title": t, "status": "passed", "ancestorTitles": ["orders"], "failureMessages": []}
                             for t in ("lists", "pages")]}]}  # fmt: skip
    lim = ArtifactLimits()
    part = parse_jest(io.BytesIO(json.dumps(doc).encode()), "jest.json", lim, Deadline(5, "jest.json")).to_part([])
    assert part.errored == 1 and part.passed == 2, part
    assert "afterAll" in part.failures[0].message


@pytest.mark.parametrize("exitcode", [2, 3])
def test_a_pytest_run_that_was_interrupted_or_crashed_is_a_failure(exitcode: int) -> None:
    """pytest stopped (interrupted, 2) or crashed (internal error, 3) after the tests it listed had passed.

    Before the fix the report's exit code was not read: the tests that happened to run read as the whole suite.
    """
    from scorer.parsers.limits import ArtifactLimits, Deadline
    from scorer.parsers.testformats import parse_pytest_json

    doc = {"created": 1.0, "duration": 3.0, "exitcode": exitcode, "root": "/src",
           "summary": {"passed": 2, "total": 2, "collected": 40},
           "tests": [{"nodeid": f"tests/test_orders.py::test_{t}", "lineno": 3, "outcome": "passed"}
                     for t in ("lists", "pages")]}  # fmt: skip
    lim = ArtifactLimits()
    part = parse_pytest_json(io.BytesIO(json.dumps(doc).encode()), ".report.json", lim,
                             Deadline(5, ".report.json")).to_part([])
    assert part.errored == 1 and part.passed == 2, part
    assert f"exit code {exitcode}" in part.failures[0].message


@pytest.mark.parametrize("success", [False, None])
def test_a_dart_run_that_did_not_succeed_or_was_closed_early_is_a_failure(success: bool | None) -> None:
    """dart test's done event says the run failed, or (success null) that the runner closed before all tests ran.

    Before the fix only the presence of the done event was checked: the tests listed, all passed, read as the suite.
    """
    from scorer.parsers.limits import ArtifactLimits, Deadline
    from scorer.parsers.testformats import parse_dart

    events = [{"type": "start", "protocolVersion": "0.1.1", "runnerVersion": "1.24.0", "time": 0},
              {"type": "suite", "suite": {"id": 0, "platform": "vm", "path": "test/orders_test.dart"}, "time": 1},
              {"type": "testStart", "test": {"id": 1, "name": "orders lists", "suiteID": 0, "groupIDs": [],
                                             "line": 5, "url": "file:///test/orders_test.dart"}, "time": 2},
              {"type": "testDone", "testID": 1, "result": "success", "hidden": False, "skipped": False, "time": 3},
              {"type": "done", "success": success, "time": 4}]
    data = "\n".join(json.dumps(e) for e in events).encode()
    part = parse_dart(io.BytesIO(data), "dart-test.json", ArtifactLimits(), Deadline(5, "dart-test.json")).to_part([])
    assert part.errored == 1 and part.passed == 1, part


@pytest.mark.parametrize("summary", [{"success": False, "wasInterrupted": True}, {"success": False}])
def test_a_jest_run_that_did_not_succeed_is_a_failure(summary: dict[str, bool]) -> None:
    """Jest says the run failed (interrupted, an obsolete snapshot under --ci) though every listed test passed.

    Before the fix only the test files were read: a run Jest itself called failed read as all passed.
    """
    from scorer.parsers.limits import ArtifactLimits, Deadline
    from scorer.parsers.testformats import parse_jest

    doc = {"numTotalTests": 1, "numFailedTests": 0, **summary, "testResults": [{
        "name": "/src/orders.test.js", "status": "passed",
        "assertionResults": [{"title": "lists", "status": "passed", "ancestorTitles": [], "failureMessages": []}]}]}
    part = parse_jest(io.BytesIO(json.dumps(doc).encode()), "jest.json", ArtifactLimits(),
                      Deadline(5, "jest.json")).to_part([])
    assert part.errored == 1 and part.passed == 1, part


def test_a_jmeter_result_file_without_its_success_column_does_not_claim_zero_errors() -> None:
    """A JTL saved without the ``success`` field says nothing of failed samples.

    Before the fix it read as an error rate of 0 %, so GNG-PERF-003 passed on a load test that never said.
    """
    from scorer.parsers.performance import parse_jtl

    lines = ["timeStamp,elapsed,label,responseCode"] + [f"{1_700_000_000_000 + i * 50},{100 + i % 7},GET /orders,500"
                                                        for i in range(200)]
    run = parse_jtl(io.BytesIO(("\n".join(lines) + "\n").encode()), "results.jtl")
    assert run.overall is not None and run.overall.samples == 200
    assert run.overall.error_rate is None and all(t.error_rate is None for t in run.transactions)
