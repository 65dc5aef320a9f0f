"""A check is known by its name *and* the app that reports it: one app's pass never hides another's failure.

GitHub's own "latest" check run is the most recent one per name and app; two apps (GitHub Actions and an
external CI) may report checks of the same name. Driven through the running app over HTTP against the sandbox.
"""

from __future__ import annotations

from tests.scenarios import LABEL, REPO, decide, release_state, stored
from tests.world import running_world

EXTERNAL_CI = 9001  # another GitHub App, e.g. an external CI service


def test_a_failure_from_one_app_is_not_hidden_by_a_later_success_of_the_same_name_from_another(database_url):
    state = release_state(policy="environments:\n  production:\n    required_checks: [integration]\n")
    _, release = state.deployment(LABEL)
    now = state.now()
    state.add_check_run(REPO, release.sha, "integration", conclusion="failure", app_id=EXTERNAL_CI,
                        started_at=now - 600, completed_at=now - 500)  # fmt: skip
    state.add_check_run(REPO, release.sha, "integration", conclusion="success", started_at=now - 300,
                        completed_at=now - 200)  # fmt: skip
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    integration = [c for c in ev.checks.checks if c.name.startswith("integration")]
    assert sorted((c.app, c.conclusion) for c in integration) == [
        (f"app-{EXTERNAL_CI}", "failure"), ("github-actions", "success")]
    assert [c.app for c in ev.checks.failed] == [f"app-{EXTERNAL_CI}"]
    assert all(c.attempts == 1 for c in integration)  # two checks, not one check run twice
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    findings = {f["rule_id"]: f for f in decision["findings"]}
    assert findings["GNG-QUAL-001"]["status"] == "failed"
    assert findings["GNG-QUAL-002"]["status"] == "failed"  # the required check failed, whichever app passed it


def test_a_rerun_by_the_same_app_still_replaces_the_earlier_attempt(database_url):
    state = release_state()
    _, release = state.deployment(LABEL)
    now = state.now()
    state.add_check_run(REPO, release.sha, "integration", conclusion="failure", started_at=now - 600,
                        completed_at=now - 500)  # fmt: skip
    state.add_check_run(REPO, release.sha, "integration", conclusion="success", started_at=now - 300,
                        completed_at=now - 200)  # fmt: skip
    with running_world(database_url, state) as world:
        decide(world, LABEL)
        ev, _, _ = stored(world, LABEL)
    [integration] = [c for c in ev.checks.checks if c.name == "integration"]
    assert (integration.conclusion, integration.attempts) == ("success", 2)
    assert not ev.checks.failed


# --- which attempt is the latest -------------------------------------------------------------------
# A re-run is a new check run: GitHub gives it a new, higher id and leaves the earlier attempt as it was.
# Its start time orders nothing: GitHub's OpenAPI description marks check-run `started_at` nullable, and
# the app that reports the check may set it to any moment when it creates or updates the run.


def _success_then_newer_attempt(started_at: float | None, status: str):
    state = release_state(policy="environments:\n  production:\n    required_checks: [integration]\n")
    _, release = state.deployment(LABEL)
    now = state.now()
    older = state.add_check_run(REPO, release.sha, "integration", conclusion="success", started_at=now - 600,
                                completed_at=now - 500)  # fmt: skip
    newer = state.add_check_run(REPO, release.sha, "integration", status=status, conclusion=None)
    newer.started_at = None if started_at is None else now + started_at
    assert newer.id > older.id
    return state


def _held_pending_on_integration(database_url, state) -> None:
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        check_text = world.check_run(LABEL).output.get("summary") or ""
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    [integration] = [c for c in ev.checks.checks if c.name == "integration"]
    assert not integration.completed and integration.attempts == 2
    findings = {f["rule_id"]: f for f in decision["findings"]}
    assert findings["GNG-QUAL-002"]["status"] == "unknown"  # required, not finished: never a pass
    assert "integration" in findings["GNG-QUAL-002"]["message"]
    assert findings["GNG-QUAL-003"]["status"] == "failed"  # a check is still running
    assert "integration" in check_text


def test_a_queued_rerun_without_a_start_time_is_the_current_attempt_not_the_older_success(database_url):
    """A queued re-run may have no started_at yet (null): it is still the newest attempt of the check."""
    _held_pending_on_integration(database_url, _success_then_newer_attempt(None, "queued"))


def test_a_rerun_reporting_an_earlier_start_than_the_older_attempt_is_still_the_current_one(database_url):
    """The reporting app sets started_at: a re-run in progress that gives its pipeline's first start time
    (before the earlier attempt's) is still the newer attempt."""
    _held_pending_on_integration(database_url, _success_then_newer_attempt(-900, "in_progress"))


# --- commit statuses: a context is known by the account that posts it ---------------------------------
# Anyone who may write to the repository can post a status under any context (the deployer, the token of
# their deploy workflow). GitHub's combined status keeps only the newest per context, whoever posted it.


def test_a_status_failure_from_ci_is_not_hidden_by_a_later_success_someone_else_posts_under_its_context(
        database_url):
    """Before the fix the newest status per context stood alone: the deployer's "success" hid the CI's failure."""
    state = release_state(policy="environments:\n  production:\n    required_checks: [ci/e2e]\n")
    _, release = state.deployment(LABEL)
    state.add_status(REPO, release.sha, "ci/e2e", "failure", creator="ci-bot")
    state.add_status(REPO, release.sha, "ci/e2e", "success", creator="dora")  # the deployer
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    e2e = sorted((c.app, c.conclusion, c.attempts) for c in ev.checks.checks if c.name == "ci/e2e")
    assert e2e == [("ci-bot", "failure", 1), ("dora", "success", 1)]
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    findings = {f["rule_id"]: f for f in decision["findings"]}
    assert findings["GNG-QUAL-001"]["status"] == "failed"
    assert findings["GNG-QUAL-002"]["status"] == "failed"


def test_a_status_the_same_account_posts_again_still_replaces_its_earlier_one(database_url):
    state = release_state()
    _, release = state.deployment(LABEL)
    state.add_status(REPO, release.sha, "ci/e2e", "failure", creator="ci-bot")
    state.add_status(REPO, release.sha, "ci/e2e", "success", creator="ci-bot")
    with running_world(database_url, state) as world:
        assert decide(world, LABEL).answer == "approved"
        ev, _, _ = stored(world, LABEL)
    [e2e] = [c for c in ev.checks.checks if c.name == "ci/e2e"]
    assert (e2e.conclusion, e2e.attempts, e2e.app) == ("success", 2, "ci-bot")
