"""gonogo sets aside its own check runs by the app that posted them, never by their name.

Only the check runs gonogo's own GitHub App posted (its report for this or another environment of the
commit) are left out of the evidence. A CI job that happens to be called `gonogo` (one running
`gonogo assess` over the build's reports, as the README suggests) is a check like any other: before, every
check named `gonogo` was dropped by the rules whatever app posted it, so that job failing approved.
Driven through the running app over HTTP against the sandbox.
"""

from __future__ import annotations

from github_app.sandbox.state import client_id_of
from tests.scenarios import APP_ID, LABEL, REPO, decide, release_state, stored
from tests.world import running_world


def test_a_failing_ci_job_named_gonogo_is_a_failed_check(database_url):
    state = release_state()
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "gonogo", conclusion="failure")  # GitHub Actions' job, not the app
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert [(c.name, c.app) for c in ev.checks.failed] == [("gonogo", "github-actions")]
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    findings = {f["rule_id"]: f for f in decision["findings"]}
    assert findings["GNG-QUAL-001"]["status"] == "failed"
    assert "gonogo: failure" in findings["GNG-QUAL-001"]["details"]


def _own_escalation_for_staging(state) -> None:
    """gonogo's own report on the commit for another environment, waiting for a human there."""
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "gonogo", status="completed", conclusion="action_required",
                        app_id=APP_ID)  # fmt: skip


def _decide_beside_staging(world):
    """Request the gate and wait for its own report (beside staging's, which is complete already)."""
    _, release = world.state.deployment(LABEL)
    world.request_gate(LABEL)
    world.wait(lambda: len([r for r in world.own_check_runs(REPO, release.sha) if r.status == "completed"]) == 2,
               60, "the release's own report")  # fmt: skip
    return world.gate(LABEL)


def test_the_apps_own_report_for_another_environment_is_not_judged_whatever_the_apps_slug(database_url):
    state = release_state()
    assert state.app is not None
    state.app.slug = "acme-release-gate"  # a self-hosted instance registered under its own name
    _own_escalation_for_staging(state)
    with running_world(database_url, state) as world:
        gate = _decide_beside_staging(world)
        ev, decision, _ = stored(world, LABEL)
    assert not [c for c in ev.checks.checks if c.name == "gonogo"], ev.checks.checks
    assert gate.answer == "approved", decision["reasons"]


def test_an_app_configured_by_its_client_id_still_knows_its_own_reports(database_url):
    """GONOGO_APP_ID may hold the app's client ID (GitHub takes it as a JWT's issuer): gonogo then asks
    GitHub for its numeric id once, rather than guessing its own reports by name."""
    state = release_state()
    _own_escalation_for_staging(state)
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "gonogo", conclusion="failure")  # and a CI job of that name
    with running_world(database_url, state, app_id=client_id_of(APP_ID)) as world:
        gate = _decide_beside_staging(world)
        ev, decision, _ = stored(world, LABEL)
    assert [(c.name, c.app, c.conclusion) for c in ev.checks.checks if c.name == "gonogo"] == [
        ("gonogo", "github-actions", "failure")]
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
