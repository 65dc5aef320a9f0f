"""Artifacts gonogo lists but does not read are unread evidence: they never let a deployment through.

Each test drives the running app over HTTP against the sandbox (signed webhook in, githubkit out) and
reads what the app stored for the deployment.
"""

from __future__ import annotations

from github_app.sandbox import SandboxState
from scorer.evidence import Availability
from tests.scenarios import LABEL, REPO, cobertura, decide, junit, release_state, stored, zipped
from tests.world import running_world

UNREAD = (Availability.INCOMPLETE, Availability.UNAVAILABLE)


def _ci_run_id(state: SandboxState) -> int:
    _, release = state.deployment(LABEL)
    return next(r.id for r in state.repo(REPO).workflow_runs.values() if r.head_sha == release.sha and r.name == "CI")


def test_the_clean_release_with_its_reports_approves(database_url: str) -> None:
    """The baseline the cases below break one way each: test reports and coverage read, approved."""
    with running_world(database_url, release_state()) as world:
        assert decide(world, LABEL).answer == "approved"
        ev, _, _ = stored(world, LABEL)
    assert ev.tests.ok and ev.coverage.ok and not ev.refused


def test_more_matching_artifacts_than_gonogo_reads_never_approve(database_url: str) -> None:
    """A run with more artifacts than ``max_artifacts`` (50): the ones past the cap are unread, not absent.

    The oldest of 62 artifacts holds a failing test. GitHub lists a run's artifacts newest first, so it is
    one of those past the cap: before the fix they were dropped without a word and the release approved.
    """
    state = release_state(artifacts_ok=False)
    ci = _ci_run_id(state)
    state.add_artifact(REPO, ci, "shard-failing", zipped({"junit-shard-x.xml": junit(3, failed=1, name="sx")}))
    state.add_artifact(REPO, ci, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    for i in range(60):
        state.add_artifact(REPO, ci, f"shard-{i:02d}", zipped({f"junit-shard-{i:02d}.xml": junit(3, name=f"s{i}")}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.tests.availability is Availability.INCOMPLETE and ev.tests.files == 50
    unread = {r.path: r.reason for r in ev.tests.refused}
    assert set(unread) == {"shard-failing", "coverage", *(f"shard-{i:02d}" for i in range(10))}  # the 12 oldest
    assert all("gonogo reads at most 50" in why and "62 artifacts" in why for why in unread.values())
    assert any("could not be read" in r for r in decision["reasons"])


def test_an_expired_test_report_artifact_never_approves(database_url: str) -> None:
    """GitHub lists an expired artifact (``expired: true``) but no longer serves it: its reports are unread.

    Before the fix an expired artifact was skipped as if it did not exist, so a release whose only test
    report had expired read as one that uploads none, and the passing test checks stood in for it.
    """
    state = release_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    state.add_check_run(REPO, release.sha, "unit tests", conclusion="success")
    ci = _ci_run_id(state)
    state.add_artifact(REPO, ci, "test-results", zipped({"junit-unit.xml": junit(120, failed=3)}), expired=True)
    state.add_artifact(REPO, ci, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        downloads = world.state.calls("GET", "/repos/acme/api/actions/artifacts/*/zip")
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.tests.availability in UNREAD and ev.tests.availability is not Availability.NOT_CONFIGURED
    [refused] = [r for r in ev.refused if r.path == "test-results"]
    assert "expired" in refused.reason and "re-run the workflow" in refused.reason
    assert ev.coverage.has_data  # the live artifact beside it was still read
    assert len(downloads) == 1  # the expired one is not asked for: GitHub would answer 410


def test_a_report_cut_inside_its_root_tag_is_refused_not_left_aside(database_url: str) -> None:
    """A JUnit file cut a few bytes into its root tag (``<testsu``) is a broken report, not some other XML.

    Before the fix the cut name read as a well-formed document of an unknown format: the file was listed as
    not understood, the good report beside it made the tests part complete, and the release approved.
    """
    state = release_state(artifacts_ok=False)
    ci = _ci_run_id(state)
    cut = junit(40, failed=2, name="integration")
    cut = cut[: cut.index("<testsuites") + len("<testsu")]
    state.add_artifact(REPO, ci, "test-results", zipped({"junit-unit.xml": junit(120), "junit-integration.xml": cut}))
    state.add_artifact(REPO, ci, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.tests.availability is Availability.INCOMPLETE and ev.tests.total == 120
    assert [r.path for r in ev.tests.refused] == ["test-results:junit-integration.xml"]
    assert not ev.not_understood


def test_more_open_alerts_than_gonogo_reads_never_approve(database_url: str) -> None:
    """A source with more open alerts than gonogo reads (5,000) is unread evidence, not a partial count.

    5,000 low Dependabot alerts, and the oldest open alert is critical: GitHub lists newest first, so it is
    past the cap. Before the fix the listing stopped at 5,000 without a word and the release approved.
    """
    state = release_state()
    repo = state.repo(REPO)
    repo.dependabot_alerts = [{"number": 1, "package": "log4j", "severity": "critical", "ghsa_id": "GHSA-jfh8-c2jp-5v3q"}]
    repo.dependabot_alerts += [{"number": n, "package": f"pkg{n}", "severity": "low", "ghsa_id": f"GHSA-low-{n}"}
                               for n in range(2, 5002)]  # fmt: skip
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        pages = [c for c in world.state.calls("GET", "/repos/acme/api/dependabot/alerts") if c.query["state"] == "open"]
    assert gate.answer != "approved" and decision["verdict"] != "go", decision["reasons"]
    assert ev.security.sources["dependabot"] is Availability.UNAVAILABLE
    assert ev.security.availability is Availability.UNAVAILABLE
    assert "more than 5,000 open alerts" in ev.security.reason
    assert any("security evidence could not be read" in r for r in decision["reasons"])
    assert len(pages) == 51  # 5,001 asked for, 100 a page: gonogo reads one past the cap to know it is there
