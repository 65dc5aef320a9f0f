"""The promise: an unreadable or unread evidence source never yields go.

One clean release (every source read, it would be approved) and one source of evidence failing in one way
at a time, end to end: the webhook in, githubkit against the sandbox, the decision out. Whatever fails and
however, the deployment is not approved and the evidence says the source could not be read.
"""

from __future__ import annotations

from typing import Any

import pytest

from scorer.evidence import Availability
from tests.scenarios import LABEL, decide, release_state, stored
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
# a 302 has no body to cut: a truncated download is a truncated zip from the storage host (artifact parsing)
NOT_APPLICABLE = {("artifact download", "truncated")}
CASES = [(s, f) for s in SOURCES for f in FAILURES if (s, f) not in NOT_APPLICABLE]


@pytest.mark.parametrize(("source", "failure"), CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_an_unreadable_source_never_yields_go(database_url, source, failure):
    route, part_name = SOURCES[source]
    fault = FAILURES[failure]
    with running_world(database_url, release_state(), github_timeout_seconds=0.5, github_retries=1) as world:
        armed = world.state.inject("GET", route, fault["kind"], times=None, status=fault.get("status", 502),
                                   seconds=fault.get("seconds", 0.0))  # fmt: skip
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert armed.fired, f"the {source} route was never read"
    assert gate.answer != "approved", decision["reasons"]
    assert decision["verdict"] != "go" and decision["action"] != "approve"
    part = ev.parts()[part_name]
    assert part.availability is Availability.UNAVAILABLE, (part.availability, part.reason)


def test_the_same_release_is_approved_when_every_source_reads(database_url):
    """The control: without a fault the release above is a go, so each failure alone is what stops it."""
    with running_world(database_url, release_state(), github_timeout_seconds=0.5, github_retries=1) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer == "approved" and decision["verdict"] == "go"
    assert {name: p.availability for name, p in ev.parts().items() if name != "performance"} == {
        name: Availability.OK for name in ev.parts() if name != "performance"}
