"""Security alert sources: only GitHub's documented "feature is off" answers mean not configured.

A 403 "Resource not accessible by integration" is a permission the installation lacks, and any other 403
or 404 says nothing about the feature: both leave the source unreadable, which never approves, and the
report names the permission to grant.
"""

from __future__ import annotations

import pytest

from scorer.evidence import Availability
from tests.scenarios import INSTALLATION, LABEL, REPO, decide, release_state, stored
from tests.world import running_world

ROUTES = {
    "code_scanning": "/repos/acme/api/code-scanning/alerts",
    "dependabot": "/repos/acme/api/dependabot/alerts",
    "secret_scanning": "/repos/acme/api/secret-scanning/alerts",
}
PERMISSIONS = {"code_scanning": "security_events", "dependabot": "vulnerability_alerts",
               "secret_scanning": "secret_scanning_alerts"}  # fmt: skip
CLOSED = {"code_scanning": "dismissed", "dependabot": "dismissed", "secret_scanning": "resolved"}


@pytest.mark.parametrize("source", sorted(PERMISSIONS))
def test_a_missing_permission_is_unavailable_never_approves_and_names_the_permission(database_url, source):
    state = release_state()
    del state.installations[INSTALLATION].permissions[PERMISSIONS[source]]
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        summary = world.check_run(LABEL).output["summary"]
        calls = world.state.calls("GET", ROUTES[source])
    # the open alerts and the recently dismissed ones (a deployer's own dismissal counts as open): both refused
    assert sorted(c.query["state"] for c in calls) == sorted(["open", CLOSED[source]])
    assert {c.status for c in calls} == {403}
    assert ev.security.sources[source] is Availability.UNAVAILABLE
    assert ev.security.availability is Availability.UNAVAILABLE
    assert PERMISSIONS[source] in ev.security.reason and "grant" in ev.security.reason
    assert gate.answer != "approved" and decision["verdict"] != "go"
    assert PERMISSIONS[source] in summary  # the admin reads which permission to grant


@pytest.mark.parametrize(
    ("source", "switch_off"),
    [
        ("code_scanning", lambda repo: setattr(repo, "code_scanning", "advanced_security_off")),
        ("code_scanning", lambda repo: setattr(repo, "code_scanning", "disabled")),
        ("code_scanning", lambda repo: setattr(repo, "code_scanning", "no_analysis")),
        ("dependabot", lambda repo: setattr(repo, "dependabot", False)),
        ("secret_scanning", lambda repo: setattr(repo, "secret_scanning", False)),
    ],
)
def test_documented_not_enabled_answers_are_not_configured(database_url, source, switch_off):
    state = release_state()
    switch_off(state.repo(REPO))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, _, _ = stored(world, LABEL)
        calls = world.state.calls("GET", ROUTES[source])
    assert len(calls) == 2 and {c.status for c in calls} <= {403, 404}
    assert ev.security.sources[source] is Availability.NOT_CONFIGURED
    others = {name: a for name, a in ev.security.sources.items() if name != source}
    assert set(others.values()) == {Availability.OK}
    assert gate.answer == "approved"  # a feature the repository does not use does not block


@pytest.mark.parametrize("status", [403, 404])
@pytest.mark.parametrize("source", sorted(ROUTES))
def test_any_other_403_or_404_is_unavailable(database_url, source, status):
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", ROUTES[source], "status", status=status, times=None)
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert ev.security.sources[source] is Availability.UNAVAILABLE
    assert str(status) in ev.security.reason
    assert gate.answer != "approved" and decision["verdict"] != "go"
