"""A deployer cannot clear their own blocker by dismissing the alert in GitHub before deploying.

Anyone with write (Dependabot) or security-events access can dismiss a code-scanning or Dependabot alert,
or resolve a secret-scanning alert as ``used_in_tests``, in GitHub's security tab. gonogo read only the open
alerts, so a deployer who dismissed the critical alert blocking their release a few minutes earlier was
approved on the next run. Each test drives the running app over HTTP against the sandbox (signed webhook in,
githubkit out) and reads what the app stored and published.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from github_app.evidence import Target, _closed_by_deployer
from github_app.sandbox import SandboxState
from scorer.evidence import Availability
from tests.scenarios import LABEL, REPO, decide, release_state, stored
from tests.world import running_world

DAY = 86400
ROUTES = {
    "code_scanning": "/repos/acme/api/code-scanning/alerts",
    "dependabot": "/repos/acme/api/dependabot/alerts",
    "secret_scanning": "/repos/acme/api/secret-scanning/alerts",
}
CLOSED_STATE = {"code_scanning": "dismissed", "dependabot": "dismissed", "secret_scanning": "resolved"}
# one critical alert per source, opened ten days before the release
CRITICAL = {
    "code_scanning": {"number": 1, "rule_id": "py/code-injection", "severity": "error", "security_severity": "critical",
                      "path": "api/orders.py", "start_line": 12},
    "dependabot": {"number": 1, "package": "log4j", "severity": "critical", "ghsa_id": "GHSA-jfh8-c2jp-5v3q"},
    "secret_scanning": {"number": 1, "secret_type": "aws_access_key_id"},
}  # fmt: skip
RULE = {"code_scanning": "GNG-SEC-001", "dependabot": "GNG-SEC-001", "secret_scanning": "GNG-SEC-003"}
FOUR_EYES_OFF = "environments:\n  production:\n    reviewers: {four_eyes: false}\n"


def _with_critical_alert(source: str, policy: str | None = None) -> SandboxState:
    state = release_state(policy=policy)
    getattr(state.repo(REPO), f"{source}_alerts").append(dict(CRITICAL[source], created_at=state.now() - 10 * DAY))
    return state


def _dismiss(state: SandboxState, source: str, by: str | None, *, ago: float = 300, **how: Any) -> None:
    reason = how.pop("reason", "used_in_tests" if source == "secret_scanning" else None)
    state.dismiss_alert(REPO, source, 1, by, at=state.now() - ago, reason=reason, **how)


def _finding(ev: Any, source: str) -> Any:
    [finding] = [f for f in ev.security.findings if f.source == source]
    return finding


@pytest.mark.parametrize("policy", [None, FOUR_EYES_OFF], ids=["four-eyes", "four-eyes-off"])
@pytest.mark.parametrize("source", sorted(CRITICAL))
def test_an_alert_the_deployer_dismissed_just_before_deploying_still_blocks(database_url, source, policy):
    """dora dismisses the critical alert five minutes before her release: it counts as open, and says why.

    Before the fix the alert was simply not listed and the release was approved. It holds with four eyes off
    too: that setting lets a reviewer decide on their own deployment through gonogo, recorded, not anyone
    with security access clear the gate from GitHub's security tab.
    """
    state = _with_critical_alert(source, policy)
    _dismiss(state, source, "dora")
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        summary = world.check_run(LABEL).output["summary"]
    assert gate.answer == "rejected" and decision["verdict"] == "no-go", decision["reasons"]
    finding = _finding(ev, source)
    verb = "resolved as used_in_tests" if source == "secret_scanning" else "dismissed"
    assert finding.note is not None and finding.note.startswith(f"{verb} by dora, the deployer, on ")
    assert finding.note.endswith("by anyone else counts")
    assert ev.security.sources[source] is Availability.OK and ev.security.count("critical") >= 1
    assert any(r.startswith(f"{RULE[source]} failed") for r in decision["reasons"]), decision["reasons"]
    assert f"{verb} by dora, the deployer" in summary  # the report says why a closed alert blocks


def test_a_dismissal_by_someone_else_or_by_no_person_is_respected(database_url):
    """rita's dismissal, Dependabot's own auto-dismissal, a fix, dora's month-old dismissal and a revocation
    GitHub confirmed (validity inactive) close their alerts: the release is approved. The listing of closed
    alerts stops at the first one last changed before the 30-day window."""
    state = release_state()
    repo = state.repo(REPO)
    opened = state.now() - 60 * DAY
    repo.dependabot_alerts = [dict(CRITICAL["dependabot"], number=n, package=f"pkg{n}", ghsa_id=f"GHSA-{n}",
                                   created_at=opened) for n in range(1, 5)]  # fmt: skip
    state.dismiss_alert(REPO, "dependabot", 1, "rita", at=state.now() - 300)
    state.dismiss_alert(REPO, "dependabot", 2, None, at=state.now() - 200, state="auto_dismissed")
    state.dismiss_alert(REPO, "dependabot", 3, None, at=state.now() - 100, state="fixed")
    state.dismiss_alert(REPO, "dependabot", 4, "dora", at=state.now() - 31 * DAY)
    repo.code_scanning_alerts = [dict(CRITICAL["code_scanning"], created_at=opened)]
    state.dismiss_alert(REPO, "code_scanning", 1, "dora", at=state.now() - 60, state="fixed")
    repo.secret_scanning_alerts = [dict(CRITICAL["secret_scanning"], created_at=opened, validity="inactive")]
    state.dismiss_alert(REPO, "secret_scanning", 1, "dora", at=state.now() - 60, reason="revoked")
    state.record_responses = True
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        closed = [c for c in world.state.calls("GET", ROUTES["dependabot"]) if c.query.get("state") == "dismissed"]
    assert gate.answer == "approved", decision["reasons"]
    assert not [f for f in ev.security.findings if f.source != "sarif"] and ev.security.ok
    [listing] = closed
    assert listing.query["sort"] == "updated" and listing.query["direction"] == "desc"
    assert [a["number"] for a in listing.response] == [1, 4]  # rita's, then dora's month-old one ends the listing


def test_an_unreadable_listing_of_closed_alerts_escalates(database_url):
    """The open alerts read fine, the dismissed ones answer 502: unread evidence, never approved."""
    state = _with_critical_alert("dependabot")
    _dismiss(state, "dependabot", "dora")
    with running_world(database_url, state) as world:
        world.state.inject("GET", ROUTES["dependabot"], "status", status=502, times=None,
                           query={"state": "dismissed"})  # fmt: skip
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        opened = [c.status for c in world.state.calls("GET", ROUTES["dependabot"]) if c.query.get("state") == "open"]
    assert gate.answer != "approved" and decision["verdict"] == "escalate", decision["reasons"]
    assert opened and set(opened) == {200}
    assert ev.security.sources["dependabot"] is Availability.UNAVAILABLE
    assert "the alerts closed in the last 30 days could not be listed" in ev.security.reason
    assert any("security evidence could not be read" in r for r in decision["reasons"])


def test_more_closed_alerts_in_the_window_than_gonogo_reads_escalate(database_url):
    """5,001 alerts dismissed by others within 30 days: the listing is cut, so the source is unread."""
    state = release_state()
    recent = state.now() - 3600
    state.repo(REPO).dependabot_alerts = [
        {"number": n, "package": f"pkg{n}", "severity": "low", "ghsa_id": f"GHSA-low-{n}", "state": "dismissed",
         "dismissed_by": "rita", "dismissed_at": recent, "created_at": recent - DAY} for n in range(1, 5002)]  # fmt: skip
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        pages = [c for c in world.state.calls("GET", ROUTES["dependabot"]) if c.query.get("state") == "dismissed"]
    assert gate.answer != "approved" and decision["verdict"] == "escalate", decision["reasons"]
    assert ev.security.sources["dependabot"] is Availability.UNAVAILABLE
    assert "more than 5,000 alerts were closed in the 30 days" in ev.security.reason
    assert len(pages) == 51  # 5,001 asked for, 100 a page: one past the cap, to know it is there


def test_the_extra_reads_are_one_listing_per_source_stopped_at_the_window(database_url):
    """The cost: one more listing per source (three calls per decision), a second page only when more than
    100 alerts were closed inside the window. 150 dismissed within it and 200 older: two pages, not four."""
    state = release_state()
    now = state.now()
    state.repo(REPO).dependabot_alerts = [
        {"number": n, "package": f"pkg{n}", "severity": "low", "ghsa_id": f"GHSA-low-{n}", "state": "dismissed",
         "dismissed_by": "rita", "created_at": now - 90 * DAY,
         "dismissed_at": now - (DAY if n <= 150 else 40 * DAY) - n} for n in range(1, 351)]  # fmt: skip
    with running_world(database_url, state) as world:
        assert decide(world, LABEL).answer == "approved"
        calls = {name: [(c.query.get("state"), c.query.get("sort"), c.query.get("direction"))
                        for c in world.state.calls("GET", route)] for name, route in ROUTES.items()}  # fmt: skip
    for name in ("code_scanning", "secret_scanning"):
        assert sorted(calls[name], key=str) == sorted([("open", None, None), (CLOSED_STATE[name], "updated", "desc")],
                                                      key=str), calls[name]  # fmt: skip
    assert calls["dependabot"].count(("open", None, None)) == 1
    assert calls["dependabot"].count(("dismissed", "updated", "desc")) == 2


def test_the_deployer_is_their_account_whatever_its_login():
    """By account id when GitHub gives both (a renamed account is still the deployer), else by login, any case."""
    created = datetime.now(UTC)
    t = Target(repository=REPO, environment="production", sha="a" * 40, ref="main", run_id=1, installation_id=1,
               created_at=created, deployment_key="k", creator="dora", creator_id=42)  # fmt: skip
    recently = created - timedelta(minutes=5)
    assert _closed_by_deployer(t, SimpleNamespace(login="dora-renamed", id=42), recently)
    assert _closed_by_deployer(t, SimpleNamespace(login="DORA", id=None), recently)
    assert not _closed_by_deployer(t, SimpleNamespace(login="rita", id=7), recently)
    assert not _closed_by_deployer(t, SimpleNamespace(login="dora", id=42), created - timedelta(days=31))
    assert not _closed_by_deployer(t, None, recently)
