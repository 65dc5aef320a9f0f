"""The promise: an unreadable or unread evidence source never yields go.

One clean release (every source read, it would be approved) and one source of evidence failing in one way
at a time, end to end: the webhook in, githubkit against the sandbox, the decision out. A source is an API
route (failing as GitHub can: 403, 404, 5xx, timeout, a truncated or corrupt body) or a report file in a
workflow artifact (truncated or corrupt). Whatever fails and however, the deployment is not approved and the
evidence says the source could not be read, or was read only in part.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from github_app.sandbox import SandboxState
from scorer.evidence import Availability
from tests.scenarios import LABEL, REPO, decide, jmeter_stats, release_state, sarif, stored, zipped
from tests.world import running_world

R = "/repos/acme/api"
# source -> (route it is read from, evidence part it feeds); "[s]" keeps a route from matching its sub-routes
SOURCES: dict[str, tuple[str, str]] = {
    "check runs": (R + "/commits/*/check-runs", "checks"),
    "commit statuses": (R + "/commits/*/statuses", "checks"),
    "workflow runs": (R + "/actions/run[s]", "tests"),
    "artifact listing": (R + "/actions/runs/*/artifacts", "tests"),
    "artifact download": (R + "/actions/artifacts/*/zip", "tests"),
    "code scanning": (R + "/code-scanning/alerts", "security"),
    "dependabot": (R + "/dependabot/alerts", "security"),
    "secret scanning": (R + "/secret-scanning/alerts", "security"),
    "compare": (R + "/compare/*", "change"),
    "deployment history": (R + "/deployment[s]", "change"),
    # the change's history (the author's and the files' earlier commits), read after the compare answer
    "commit history": (R + "/commit[s]", "change"),
}
# how a source fails: a sandbox fault and its arguments
FAILURES: dict[str, dict[str, Any]] = {
    "403": {"kind": "status", "status": 403},  # a 403 that is not one of GitHub's "not enabled" answers
    "404": {"kind": "status", "status": 404},  # a 404 that is not one of them either
    "5xx": {"kind": "status", "status": 502},
    "timeout": {"kind": "latency", "seconds": 2.0},  # longer than GONOGO_GITHUB_TIMEOUT_SECONDS below
    "truncated": {"kind": "truncate"},
    "corrupt": {"kind": "corrupt"},
}
# a 302 has no body to cut: a truncated download is a truncated report (below)
NOT_APPLICABLE = {("artifact download", "truncated")}
# report files in the release's workflow artifacts: source -> (artifact, file in it, evidence part)
REPORTS: dict[str, tuple[str, str, str]] = {
    "junit report": ("test-results", "junit-unit.xml", "tests"),
    "coverage report": ("coverage", "coverage.xml", "coverage"),
    "sarif report": ("security-reports", "scan.sarif", "security"),
    "load-test report": ("perf", "statistics.json", "performance"),
}
REPORT_FAILURES = ("truncated", "corrupt")
CASES = [(s, f) for s in SOURCES for f in FAILURES if (s, f) not in NOT_APPLICABLE]
CASES += [(s, f) for s in REPORTS for f in REPORT_FAILURES]
SETTINGS = {"github_timeout_seconds": 0.5, "github_retries": 1}


def clean_release() -> SandboxState:
    """The release of ``release_state`` with a clean SARIF scan and load test among its artifacts."""
    state = release_state()
    _, dep = state.deployment(LABEL)
    [ci] = [run for run in state.repo(REPO).workflow_runs.values() if run.head_sha == dep.sha and run.name == "CI"]
    state.add_artifact(REPO, ci.id, "security-reports", zipped({"scan.sarif": sarif([])}))
    state.add_artifact(REPO, ci.id, "perf", zipped({"statistics.json": jmeter_stats(180.0)}))
    return state


def spoil(state: SandboxState, artifact: str, member: str, how: str) -> None:
    """Cut one report in an artifact in half, or replace it with bytes that only look like its format."""
    [art] = [a for a in state.repo(REPO).artifacts.values() if a.name == artifact]
    files = {info.filename: zipfile.ZipFile(io.BytesIO(art.data)).read(info) for info in
             zipfile.ZipFile(io.BytesIO(art.data)).infolist()}  # fmt: skip
    data = files[member]
    if how == "truncated":
        files[member] = data[: len(data) // 2]
    else:  # same name and opening, then garbage: a report overwritten by another job's output
        files[member] = data[:40] + bytes(range(256)) * 4
    art.data = zipped(files)


@pytest.mark.parametrize(("source", "failure"), CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_an_unreadable_source_never_yields_go(database_url, source, failure):
    state = clean_release()
    armed: Any = None
    if source in REPORTS:
        artifact, member, part_name = REPORTS[source]
        spoil(state, artifact, member, failure)
    else:
        route, part_name = SOURCES[source]
        fault = FAILURES[failure]
        armed = state.inject("GET", route, fault["kind"], times=None, status=fault.get("status", 502),
                             seconds=fault.get("seconds", 0.0))  # fmt: skip
    with running_world(database_url, state, **SETTINGS) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert armed is None or armed.fired, f"the {source} route was never read"
    assert gate.answer != "approved", decision["reasons"]
    assert decision["verdict"] != "go" and decision["action"] != "approve"
    part = ev.parts()[part_name]
    if source == "commit history" and part.availability is Availability.OK:
        # an error answer: the comparison was read, the history beside it only in part, and it says so (a body
        # that cannot be parsed at all leaves the whole change unavailable instead, checked below)
        assert ev.change.unread, ev.change.provenance
        assert any("change evidence was read only in part" in r for r in decision["reasons"])
        return
    assert part.availability in (Availability.UNAVAILABLE, Availability.INCOMPLETE), (part.availability, part.reason)


def test_the_same_release_is_approved_when_every_source_reads(database_url):
    """The control: without a fault the release above is a go, so each failure alone is what stops it."""
    with running_world(database_url, clean_release(), **SETTINGS) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer == "approved" and decision["verdict"] == "go", decision["reasons"]
    assert {name: p.availability for name, p in ev.parts().items()} == {name: Availability.OK for name in ev.parts()}
