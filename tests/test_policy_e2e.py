"""Issue 5 end to end: the policy file on the default branch decides, through the sandbox over real HTTP.

Each test fires the protection-rule webhook at the running app and asserts on what GitHub (the
sandbox) received: the answer, the check run with its report and annotations, the review comment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.scenarios import (
    LABEL,
    REPO,
    cobertura,
    decide,
    junit,
    perf_state,
    record_outcome,
    release_state,
    stored,
    zipped,
)
from tests.world import World, running_world

POLICY_PATH = "/repos/acme/api/contents/.github/gonogo.yml"


def answers(world: World, label: str = LABEL) -> list[str | None]:
    repo, dep = world.state.deployment(label)
    return [r.state for r in world.state.reviews(repo.full_name) if r.run_id == dep.run_id and r.state and r.accepted]


def comments(world: World, label: str = LABEL) -> list[str]:
    repo, dep = world.state.deployment(label)
    return [r.comment for r in world.state.reviews(repo.full_name) if r.run_id == dep.run_id]


def policy_reads(world: World) -> list[str | None]:
    """The ref of every read of the repository's policy file."""
    return [c.query.get("ref") for c in world.state.calls("GET", POLICY_PATH)]


def test_clean_deployment_under_an_explicit_policy_is_approved(database_url: str) -> None:
    policy = "extends: default\nenvironments:\n  production:\n    approve: {max_risk: 0.3, min_score: 75}\n"
    with running_world(database_url, release_state(policy=policy)) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
        reads = policy_reads(world)
    assert gate.answer == "approved" and answers(world) == ["approved"]
    assert run.conclusion == "success" and run.output["summary"].startswith("## ✅ GO")
    assert decision["verdict"] == "go" and decision["blocking"] == []
    assert "gonogo.yml" in decision["policy_source"] and reads == [None]  # the default branch, as GitHub knows it
    assert "GO" in comments(world)[-1] and len(comments(world)[-1]) <= 1024


def test_failing_tests_are_no_go_with_each_failure_annotated(database_url: str) -> None:
    with running_world(database_url, release_state(failing_tests=3)) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer == "rejected" and run.conclusion == "failure"
    assert "GNG-TEST-001" in decision["blocking"]
    failing = sorted((a.path, a.start_line) for a in run.annotations if a.annotation_level == "failure")
    assert failing == [("tests/test_unit.py", 10), ("tests/test_unit.py", 11), ("tests/test_unit.py", 12)]
    titles = {a.title for a in run.annotations}
    assert {f"Test failed: tests.test_unit.test_case_{i}" for i in range(3)} <= titles
    assert all("assert" in a.message for a in run.annotations)  # the assertion message, not a placeholder
    assert "GNG-TEST-001" in run.output["summary"] and "NO-GO" in comments(world)[-1]


def test_critical_vulnerability_is_no_go(database_url: str) -> None:
    with running_world(database_url, release_state(critical_vuln=True)) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer == "rejected" and run.conclusion == "failure"
    assert ev.security.count("critical") == 1 and decision["blocking"] == ["GNG-SEC-001"]
    [note] = [a for a in run.annotations if a.path == "api/orders.py"]
    assert note.start_line == 12 and note.annotation_level == "failure" and "CVE-2024-0001" in note.title


@pytest.mark.parametrize(
    ("rules", "verdict", "answer"),
    [
        ("", "escalate", None),  # GNG-PERF-002 is a major finding by default: a human decides
        ("      GNG-PERF-002: {severity: blocker}\n", "no-go", "rejected"),
        ("      GNG-PERF-002: {threshold: 80}\n      GNG-PERF-004: {threshold: 80}\n", "go", "approved"),
    ],
    ids=["default-escalates", "blocker-rejects", "tolerant-threshold-approves"],
)
def test_performance_regression_is_judged_per_policy(database_url: str, rules: str, verdict: str,
                                                     answer: str | None) -> None:  # fmt: skip
    policy = "extends: default\nenvironments:\n  production:\n    approve: {max_risk: 0.3}\n"
    if rules:
        policy += "    rules:\n" + rules
    with running_world(database_url, perf_state(policy=policy)) as world:
        assert decide(world, "v1.1").answer == "approved", world.check_run("v1.1").output["summary"][:1500]
        record_outcome(world, "v1.1", "success")
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        run = world.check_run(LABEL)
    overall = ev.performance.overall
    assert overall is not None and overall.regression_pct is not None and 25 < overall.regression_pct < 60
    assert ev.performance.method == "mann-whitney"
    perf = {f["rule_id"]: f for f in decision["findings"] if f["rule_id"] == "GNG-PERF-002"}["GNG-PERF-002"]
    assert perf["status"] == ("passed" if verdict == "go" else "failed"), perf
    assert decision["verdict"] == verdict, decision["reasons"]
    assert gate.answer == answer
    if verdict != "go":
        assert "GNG-PERF-002" in run.output["summary"]
        assert decision["strategy"]["name"] in ("canary", "blue-green")  # a regression is watched while rolling out


def _freeze_now(zone: str) -> str:
    """A weekly freeze window covering the current moment in ``zone`` (two hours either side)."""
    now = datetime.now(UTC).astimezone(ZoneInfo(zone))
    start, end = (f"{t:%a}".upper() + f" {t:%H:%M}" for t in (now - timedelta(hours=2), now + timedelta(hours=2)))
    return f'{{start: "{start}", end: "{end}", timezone: "{zone}"}}'


def test_freeze_window_escalates_a_clean_deployment(database_url: str) -> None:
    policy = f"extends: default\nenvironments:\n  production:\n    freeze:\n      - {_freeze_now('Pacific/Auckland')}\n"
    with running_world(database_url, release_state(policy=policy)) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
    assert decision["verdict"] == "escalate" and decision["freeze"]["active"] is True
    assert decision["blocking"] == []  # nothing failed: the freeze alone holds it
    assert any("freeze" in r for r in decision["reasons"])
    assert gate.answer is None and gate.waiting and run.conclusion == "action_required"
    assert "Pacific/Auckland" in run.output["summary"] and "freeze" in comments(world)[-1].lower()


def test_dry_run_approves_and_says_what_it_would_have_done(database_url: str) -> None:
    with running_world(database_url, release_state(failing_tests=2, policy="extends: default\nmode: dry-run\n")) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer == "approved" and answers(world) == ["approved"]
    assert decision["mode"] == "dry-run" and decision["verdict"] == "no-go" and decision["action"] == "approve"
    assert "DRY-RUN" in run.output["summary"] and "NO-GO" in run.output["summary"]
    assert "would be NO-GO" in comments(world)[-1]
    assert "GNG-TEST-001" in run.output["summary"]  # the finding it would have blocked on is reported


INVALID_POLICY = """\
extends: default
environments:
  production:
    approve:
      max_risk: 1.5
    reviewrs: {users: [alice]}
"""


def test_invalid_policy_on_the_default_branch_escalates_with_its_errors(database_url: str) -> None:
    with running_world(database_url, release_state(policy=INVALID_POLICY)) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
    assert decision["verdict"] == "escalate" and decision["action"] == "escalate"
    assert gate.answer is None and gate.waiting and run.conclusion == "action_required"
    errors = decision["policy_errors"]
    assert any("reviewrs" in e for e in errors) and any("max_risk" in e for e in errors)
    assert any(":6" in e or "line 6" in e for e in errors), errors  # errors point at the line
    summary = run.output["summary"]
    assert "reviewrs" in summary and "max_risk" in summary


RELAXED = "extends: relaxed\nmode: dry-run\nenvironments:\n  '*':\n    rules:\n      GNG-TEST-001: off\n"


def test_policy_on_a_feature_branch_cannot_relax_its_own_gate(database_url: str) -> None:
    state = release_state(feature_branch_policy=RELAXED)
    repo = state.repo(REPO)
    relax_sha = repo.branches["relax"]
    ci = state.add_workflow_run(REPO, relax_sha, name="CI", head_branch="relax")
    state.add_artifact(REPO, ci.id, "test-results", zipped({"junit-unit.xml": junit(40, failed=2)}))
    state.add_artifact(REPO, ci.id, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    state.add_check_run(REPO, relax_sha, "build", conclusion="success")
    dep = state.add_deployment(REPO, relax_sha, "production", creator="mallory", ref="relax")
    state.named_deployments["relax"] = (REPO, dep.id)
    with running_world(database_url, state) as world:
        gate = decide(world, "relax")
        _, decision, _ = stored(world, "relax")
        reads = policy_reads(world)
    assert reads and set(reads) == {None}  # the default branch, never the ref being deployed
    assert decision["mode"] == "enforce" and decision["verdict"] == "no-go"
    assert "GNG-TEST-001" in decision["blocking"] and gate.answer == "rejected"
    assert "relax" not in decision["policy_source"]


ORG_FREEZE = """
environments:
  production:
    freeze:
      - {start: "MON 00:00", end: "SUN 23:59", reason: "organisation-wide change freeze"}
"""


def test_organisation_defaults_that_github_fails_to_serve_are_not_dropped(database_url: str) -> None:
    """The organisation's freeze must hold while GitHub answers 502 for its file: before, any error reading the
    organisation defaults counted as "no defaults", and the clean release was approved without them."""
    state = release_state()
    state.add_repo("acme/.github", default_branch="main")
    state.set_file("acme/.github", "main", ".github/gonogo.yml", ORG_FREEZE)
    with running_world(database_url, state) as world:
        world.state.inject("GET", "/repos/acme/.github/contents/", "status", status=502, times=None)
        world.request_gate(LABEL)
        world.wait(lambda: world.gate(LABEL).answer or any(d.attempts >= 2 for d in world.deliveries()),
                   what="an answer or a retried delivery")  # fmt: skip
        assert world.gate(LABEL).answer is None  # not answered while the defaults cannot be read
        world.state.clear_faults()
        gate = world.wait_decided(LABEL, timeout=60)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer is None and decision["verdict"] == "escalate"
    assert decision["freeze"]["reason"] == "organisation-wide change freeze"


REPO_FREEZE = ORG_FREEZE.replace("organisation-wide change freeze", "the repository's own freeze")


def test_a_policy_read_after_the_default_branch_was_renamed_is_not_taken_as_absent(database_url: str) -> None:
    """A retried job carries the webhook's default branch, which a rename in between makes a name GitHub no longer
    knows. Before, the read asked for that name, GitHub answered 404 ("No commit found for the ref"), the file
    counted as absent, and the clean release was approved by the default pack through the repository's freeze."""
    state = release_state(policy=REPO_FREEZE)
    with running_world(database_url, state) as world:
        world.state.inject("GET", POLICY_PATH, "status", status=502, times=None)
        world.request_gate(LABEL)
        world.wait(lambda: any(d.attempts >= 2 for d in world.deliveries()), what="a retried delivery")
        assert world.gate(LABEL).answer is None
        world.state.rename_branch(REPO, "main", "trunk")
        world.state.clear_faults()
        gate = world.wait_decided(LABEL, timeout=60)
        _, decision, _ = stored(world, LABEL)
        reads = policy_reads(world)
    assert gate.answer is None and decision["verdict"] == "escalate"
    assert decision["freeze"]["reason"] == "the repository's own freeze"
    assert reads and set(reads) == {None}  # the default branch as GitHub knows it at the time of the read


def _padded(policy: str) -> str:
    """The policy followed by comment lines, past the 1 MB GitHub sends inline."""
    return policy + ("# " + "x" * 98 + "\n") * 10_100


def test_a_repository_policy_over_1_mb_is_a_policy_error_not_the_default_pack(database_url: str) -> None:
    """GitHub does not send a file over 1 MB through the contents API (403 "too_large"). Before, that 403 went up as
    a failed read and the job was retried until it died; the release waited with no word of why."""
    with running_world(database_url, release_state(policy=_padded(REPO_FREEZE))) as world:
        gate = decide(world, LABEL)
        run = world.check_run(LABEL)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer is None and decision["verdict"] == "escalate"
    errors = decision["policy_errors"]
    assert any("1 MB" in e and ".github/gonogo.yml" in e for e in errors), errors
    assert "1 MB" in run.output["summary"]


def test_organisation_defaults_over_1_mb_are_not_dropped(database_url: str) -> None:
    """The organisation's file over 1 MB: GitHub answers 403, which the reader of organisation defaults took for
    "this installation may not read it", so the clean release was approved without the organisation's freeze."""
    state = release_state()
    state.add_repo("acme/.github", default_branch="main")
    state.set_file("acme/.github", "main", ".github/gonogo.yml", _padded(ORG_FREEZE))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer is None and decision["verdict"] == "escalate"
    assert any("1 MB" in e and "acme/.github" in e for e in decision["policy_errors"]), decision["policy_errors"]


def test_an_organisation_freeze_for_every_environment_holds_beside_the_repositorys_own_windows(database_url: str) -> None:
    """The organisation freezes every environment (`"*"`); the repository lists production's own (past) windows.
    Before, the environment's list replaced the `"*"` list, and the clean release was approved through the
    organisation's freeze; now both hold."""
    org = f'environments:\n  "*":\n    freeze:\n      - {_freeze_now("America/New_York")[:-1]}, reason: "org change freeze"}}\n'
    repo = 'environments:\n  production:\n    freeze:\n      - {start: "2020-12-24", end: "2020-12-26", reason: "old"}\n'
    state = release_state(policy=repo)
    state.add_repo("acme/.github", default_branch="main")
    state.set_file("acme/.github", "main", ".github/gonogo.yml", org)
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        _, decision, _ = stored(world, LABEL)
    assert gate.answer is None and decision["verdict"] == "escalate"
    assert decision["freeze"]["reason"] == "org change freeze" and decision["blocking"] == []
