"""Quality rules: tests, coverage and CI checks."""

from __future__ import annotations

from rules.rule import Rule, at_least, at_most, failed, passed, skipped, unknown
from rules.types import RuleResult
from scorer.assessment import Assessment
from scorer.completeness import stand_in_test_checks
from scorer.evidence import Availability, CheckResult

_MAX_DETAILS = 10


def _all_tests_pass(a: Assessment, limit: float | None) -> RuleResult:
    t = a.evidence.tests
    bad = t.failed + t.errored
    # a test that failed on one matrix leg and passed on another says so: it fails where it ran there
    details = [
        f"{c.classname + '.' if c.classname else ''}{c.name}" + (f" ({c.file}:{c.line})" if c.file and c.line else "")
        + (f": {c.where}" if c.where else "")
        for c in t.failures[:_MAX_DETAILS]
    ]
    return at_most(bad, limit, "failing tests", details=details)


def _tests_from_checks(a: Assessment, limit: float | None) -> RuleResult:
    """Judge the tests by the checks that run them when no report was uploaded (counts unknown)."""
    stand_in = stand_in_test_checks(a.evidence)
    if stand_in is None:
        return skipped(f"no test reports and no test checks ({a.evidence.tests.reason})", limit)
    if stand_in.failed:
        names = [f"{c.name}: {c.conclusion}" for c in stand_in.failed]
        return failed(f"test checks failed: {', '.join(names[:3])} (no test reports, counts unknown)",
                      value=len(stand_in.failed), threshold=limit, details=names[:_MAX_DETAILS])  # fmt: skip
    if stand_in.pending:
        return unknown(f"test checks not finished: {', '.join(c.name for c in stand_in.pending[:5])}", limit)
    not_run = ", ".join(f"{c.name} ({c.conclusion or 'no conclusion'})" for c in stand_in.not_run[:5])
    if not stand_in.passed:
        # a skipped job ran no test: nothing says the tests pass
        return unknown(f"no test reports, and the test checks did not run: {not_run}", limit)
    listed = ", ".join(c.name for c in stand_in.passed[:5])
    more = f" and {len(stand_in.passed) - 5} more" if len(stand_in.passed) > 5 else ""
    also = f"; did not run: {not_run}" if not_run else ""
    return passed(f"tests passed, counts unknown: no test reports, test checks {listed}{more} succeeded{also}", 0, limit)


def _tests_reported(a: Assessment, limit: float | None) -> RuleResult:
    t = a.evidence.tests
    if t.availability == Availability.UNAVAILABLE:
        return unknown(f"test reports could not be read: {t.reason}", limit)
    if t.availability == Availability.NOT_CONFIGURED:
        stand_in = stand_in_test_checks(a.evidence)
        if stand_in is not None and (stand_in.passed or stand_in.failed):  # a skipped check stands in for nothing
            result = failed(
                f"no test reports; the test checks ({', '.join(stand_in.names[:3])}) say whether tests passed "
                "but not how many ran", value=0, threshold=limit,
            )  # fmt: skip
            result.relaxed_to = "minor"
            return result
        return failed(f"no test reports were found ({t.reason})", value=0, threshold=limit)
    if t.availability == Availability.INCOMPLETE:
        return unknown(f"some test reports could not be read: {t.reason}", limit)
    if not t.skipped:
        return at_least(t.total, limit, "tests reported")
    # a skipped test ran nothing: a report of skipped tests only is a report that no test ran
    ran = t.total - t.skipped
    result = at_least(ran, limit, "tests run")
    return result.model_copy(update={"message": f"{result.message} ({t.total} reported, {t.skipped} skipped)"})


def _no_flaky(a: Assessment, limit: float | None) -> RuleResult:
    flaky = a.evidence.tests.flaky
    details = [f"{c.classname + '.' if c.classname else ''}{c.name}" + (f": {c.where}" if c.where else "")
               for c in flaky[:_MAX_DETAILS]]
    result = at_most(len(flaky), limit, "flaky tests", details=details)
    if flaky and flaky[0].where:  # an excused failure says where it failed and where its retry passed
        more = f"; {len(flaky) - 1} more in the details" if len(flaky) > 1 else ""
        result = result.model_copy(update={"message": f"{result.message} ({details[0]}{more})"})
    return result


def _few_skipped(a: Assessment, limit: float | None) -> RuleResult:
    t = a.evidence.tests
    if t.total == 0:
        return skipped("no tests reported", limit)
    return at_most(round(100.0 * t.skipped / t.total, 2), limit, "skipped tests", "%")


def _line_coverage(a: Assessment, limit: float | None) -> RuleResult:
    rate = a.evidence.coverage.line_rate
    return at_least(None if rate is None else round(rate * 100, 2), limit, "line coverage", "%")


def _coverage_no_drop(a: Assessment, limit: float | None) -> RuleResult:
    delta = a.evidence.coverage.delta
    if delta is None:
        return skipped("no coverage baseline from an earlier deployment", limit)
    return at_most(round(-delta * 100, 2), limit, "line coverage drop", "pp")


def _branch_coverage(a: Assessment, limit: float | None) -> RuleResult:
    rate = a.evidence.coverage.branch_rate
    return at_least(None if rate is None else round(rate * 100, 2), limit, "branch coverage", "%")


def _checks_succeed(a: Assessment, limit: float | None) -> RuleResult:
    bad = list(a.evidence.checks.failed)
    return at_most(len(bad), limit, "failed checks", details=[f"{c.name}: {c.conclusion}" for c in bad[:_MAX_DETAILS]])


def _required_checks(a: Assessment, limit: float | None) -> RuleResult:
    ch = a.evidence.checks
    if not ch.required:
        return skipped("the policy requires no named checks", limit)
    # several apps (or a check run and a status) may report the same name: each of them must pass
    by_name: dict[str, list[CheckResult]] = {}
    for c in ch.checks:
        by_name.setdefault(c.name, []).append(c)
    failing = [n for n in ch.required if any(c.failed for c in by_name.get(n, []))]
    waiting = [n for n in ch.required if not by_name.get(n) or not all(c.completed for c in by_name[n])]
    # skipped or neutral: finished without running or judging anything, so it is no pass (GitHub's branch
    # protection counts a skipped job as passing; a gate that must see the check pass does not)
    not_run = [f"{n} ({c.conclusion or 'no conclusion'})" for n in ch.required if n not in waiting
               for c in by_name.get(n, []) if c.not_run]  # fmt: skip
    if failing:
        return failed(
            f"required checks failed: {', '.join(failing)}", value=len(failing), threshold=limit, details=failing
        )
    if waiting or not_run:
        # A check that has not reported yet, or finished without running, is missing evidence, not a failure.
        said = [f"not finished or not reported: {', '.join(waiting)}"] if waiting else []
        said += [f"did not run: {', '.join(not_run)}"] if not_run else []
        return unknown(f"required checks {'; '.join(said)}", limit)
    return passed(f"all {len(ch.required)} required checks passed", value=0, threshold=limit)


# Jobs that wait for this very deployment's approval show as "waiting"; they are not pending work.
_AWAITING_US = {"waiting", "requested"}


def _none_pending(a: Assessment, limit: float | None) -> RuleResult:
    pending = [c for c in a.evidence.checks.pending if c.status not in _AWAITING_US]
    return at_most(len(pending), limit, "checks still running", details=[c.name for c in pending[:_MAX_DETAILS]])


def _no_reruns(a: Assessment, limit: float | None) -> RuleResult:
    rerun = a.evidence.checks.rerun
    return at_most(
        len(rerun), limit, "checks re-run", details=[f"{c.name} ({c.attempts} attempts)" for c in rerun[:_MAX_DETAILS]]
    )


RULES: list[Rule] = [
    Rule(
        id="GNG-TEST-001", dimension="quality", title="Ensure all tests pass", severity="blocker",
        why="A failing test is a known defect or a broken contract; shipping it turns a red build into an incident.",
        fix="Fix the failing tests listed in the annotations, or fix the code they exercise, and re-run the workflow.",
        check=_all_tests_pass, parts=("tests",), threshold=0, skip_when_not_configured=True,
        failure_stands_on_partial=True, when_not_configured=_tests_from_checks,
    ),
    Rule(
        id="GNG-TEST-002", dimension="quality", title="Ensure test results are reported", severity="major",
        why="Without test reports gonogo cannot tell a tested change from an untested one.",
        fix="Upload JUnit/xUnit reports as a workflow artifact (e.g. actions/upload-artifact with pytest --junitxml).",
        check=_tests_reported, parts=(), about=("tests",), scored=False, threshold=1,
    ),
    Rule(
        id="GNG-TEST-003", dimension="quality", title="Ensure no tests are flaky", severity="minor",
        why="Flaky tests hide real failures behind retries and erode trust in the suite.",
        fix="Quarantine or fix the flaky tests; make them deterministic (time, ordering, network).",
        check=_no_flaky, parts=("tests",), threshold=0, skip_when_not_configured=True,
        failure_stands_on_partial=True,
    ),
    Rule(
        id="GNG-TEST-004", dimension="quality", title="Ensure few tests are skipped", severity="minor",
        unit="%",
        why="Skipped tests are untested behaviour that looks tested.",
        fix="Re-enable skipped tests or delete the ones that no longer apply.",
        check=_few_skipped, parts=("tests",), threshold=10, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-TEST-005", dimension="quality", title="Ensure line coverage meets the minimum", severity="major",
        unit="%",
        why="Code no test executes can break without anyone noticing before production.",
        fix="Add tests for the uncovered code paths of this change, or lower the threshold in .github/gonogo.yml.",
        check=_line_coverage, parts=("coverage",), threshold=70, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-TEST-006", dimension="quality", title="Ensure line coverage does not drop", severity="minor",
        unit="pp",
        why="A coverage drop means new code arrived without tests.",
        fix="Add tests for the new code so coverage returns to the last deployment's level.",
        check=_coverage_no_drop, parts=("coverage",), threshold=1, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-TEST-007", dimension="quality", title="Ensure branch coverage meets the minimum", severity="minor",
        unit="%",
        why="Untested branches are where error handling and edge cases fail.",
        fix="Add tests for both sides of the conditions in the changed code.",
        check=_branch_coverage, parts=("coverage",), threshold=50, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-QUAL-001", dimension="quality", title="Ensure all checks succeed", severity="blocker",
        why="A failed check run or commit status means the commit did not pass its own pipeline.",
        fix="Open the failed checks listed here, fix the cause and re-run them.",
        check=_checks_succeed, parts=("checks",), threshold=0, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-QUAL-002", dimension="quality", title="Ensure required checks passed", severity="blocker",
        why="The policy names checks that must pass before this environment; any other outcome is a gap.",
        fix="Make sure the required workflows run on this commit and pass; check their names in required_checks.",
        check=_required_checks, parts=("checks",), threshold=0, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-QUAL-003", dimension="quality", title="Ensure no checks are still running", severity="major",
        why="A check still running may yet fail; deciding now ignores its result.",
        fix="Wait for the running checks to finish, then re-run the deployment.",
        check=_none_pending, parts=("checks",), threshold=0, skip_when_not_configured=True,
    ),
    Rule(
        id="GNG-QUAL-004", dimension="quality", title="Ensure checks pass without re-runs", severity="minor",
        why="Checks that only passed on a retry often hide flakiness or a race.",
        fix="Find why the first attempt failed and fix it rather than re-running.",
        check=_no_reruns, parts=("checks",), threshold=0, skip_when_not_configured=True,
    ),
]  # fmt: skip
