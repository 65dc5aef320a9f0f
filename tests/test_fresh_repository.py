"""A freshly created repository or environment is judged on its evidence, not on its missing history."""

from __future__ import annotations

from datetime import UTC, datetime

from github_app.sandbox import SandboxState, generate_key_pair
from rules.pipeline import evaluate
from rules.policy import default_policy
from rules.report import render_text
from rules.samples import clean_evidence
from rules.types import Decision
from scorer.evidence import ChangePart, CoveragePart, Evidence, OperationalPart
from tests.scenarios import APP_ID, INSTALLATION, LABEL, REPO, junit, zipped
from tests.world import running_world

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
NO_BASE = ChangePart(availability="not_configured",
                     reason="first deployment to production: no earlier successful deployment to compare with")  # fmt: skip
NEW_ENV = OperationalPart(availability="ok", reason="no earlier deployments recorded", deploys_last_24h=0,
                          hour_utc=10, weekday=2)  # fmt: skip
NO_COVERAGE = CoveragePart(availability="not_configured", reason="no coverage reports found in artifacts")


def _decide(ev: Evidence) -> Decision:
    return evaluate(ev, default_policy(), "production", NOW)


def _fresh(**parts: object) -> Evidence:
    return clean_evidence().model_copy(update={"operational": NEW_ENV, "change": NO_BASE, "coverage": NO_COVERAGE, **parts})


def test_first_deployment_to_an_environment_is_not_escalated_for_missing_history() -> None:
    d = _decide(_fresh())
    assert d.verdict == "go", d.reasons
    assert any(r.startswith("no history yet: first deployment to production") for r in d.reasons)
    change = [f for f in d.findings if f.dimension == "change"]
    assert change and all(f.status == "skipped" and f.message.startswith("no history yet") for f in change)
    assert "change" not in d.evidence_read
    assert "no history yet" in render_text(d)


def test_the_strategy_does_not_speak_of_a_previous_version_that_does_not_exist() -> None:
    s = _decide(_fresh()).strategy
    assert s.name == "direct" and "first release" in s.steps[0]
    assert not any("previous version ready" in x or "compared with the previous version" in x for x in [*s.steps, *s.watch])
    with_history = _decide(clean_evidence()).strategy
    assert any("previous version ready" in x for x in with_history.steps)


def test_history_rules_say_no_history_yet() -> None:
    d = _decide(_fresh())
    ops = {f.rule_id: f for f in d.findings if f.rule_id in ("GNG-OPS-001", "GNG-OPS-004", "GNG-OPS-005")}
    assert all(f.status == "skipped" and "no history yet" in f.message for f in ops.values()), ops


def test_a_missing_change_with_history_still_lowers_confidence() -> None:
    unread = ChangePart(availability="unavailable", reason="compare failed: 502 from GitHub")
    with_history = _fresh(operational=clean_evidence().operational, change=unread)
    fresh = _decide(_fresh())
    d = _decide(with_history)
    assert d.confidence < fresh.confidence and d.evidence_read["change"] == 0.0
    assert all(f.status == "unknown" for f in d.findings if f.dimension == "change")
    assert not any("no history yet" in r for r in d.reasons)
    assert d.verdict != "go" and any("change evidence could not be read" in r for r in d.reasons)


def test_an_unread_change_on_a_first_deployment_never_approves() -> None:
    # a compare that failed is unread evidence even when the environment has no history yet
    d = _decide(_fresh(change=ChangePart(availability="unavailable", reason="compare refused: 403")))
    assert d.verdict == "escalate" and any("change evidence could not be read" in r for r in d.reasons)
    assert all(f.status == "unknown" for f in d.findings if f.dimension == "change")


def test_missing_history_hides_no_evidence() -> None:
    d = _decide(_fresh(tests=clean_evidence(tests={"total": 10, "passed": 9, "failed": 1}).tests))
    assert d.verdict == "no-go" and d.blocking == ["GNG-TEST-001"]
    vulnerable = _decide(_fresh(security=clean_evidence(security={"counts": {"high": 2}}).security))
    assert vulnerable.verdict == "escalate" and any("GNG-SEC-002" in r for r in vulnerable.reasons)


def test_history_that_was_not_read_is_not_taken_for_a_fresh_environment() -> None:
    unread = _fresh(operational=OperationalPart(availability="unavailable", reason="database down"))
    d = _decide(unread)
    assert d.verdict == "escalate" and not any("no history yet" in r for r in d.reasons)


def fresh_state() -> SandboxState:
    """A repository created today: one commit, green checks and a test report, never deployed anywhere."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    state.add_repo(REPO, default_branch="main").code_scanning = "enabled"
    head = state.add_commit(REPO, message="Initial commit", author="bob", branch="main",
                            files=[{"filename": "api/app.py", "status": "added", "additions": 120},
                                   {"filename": "tests/test_app.py", "status": "added", "additions": 60}])  # fmt: skip
    for name in ("build", "lint"):
        state.add_check_run(REPO, head.sha, name, conclusion="success")
    ci = state.add_workflow_run(REPO, head.sha, name="CI", status="completed", conclusion="success")
    state.add_artifact(REPO, ci.id, "test-results", zipped({"junit.xml": junit(40)}))
    state.add_team_member("acme", "sre", "rita")
    for login, perm in (("rita", "maintain"), ("dora", "write")):
        state.set_collaborator(REPO, login, perm)
    dep = state.add_deployment(REPO, head.sha, "production", creator="dora", ref="main")
    dep.name = LABEL
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state


def test_a_new_repository_is_approved_on_its_first_deployment(database_url: str) -> None:
    with running_world(database_url, fresh_state()) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
        assert gate.answer == "approved", summary[:4000]
        assert "no history yet" in summary
