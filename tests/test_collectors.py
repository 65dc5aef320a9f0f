"""Issue 4 collector acceptance: every evidence source read from the sandbox over real HTTP, by the running app.

Each test drives the whole gate (webhook in, githubkit against the sandbox, decision stored) and then
reads the ``Evidence`` the app stored for the deployment, so what is asserted is what the rules saw.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from github_app.sandbox.app import ancestry
from scorer.evidence import Availability, Evidence
from tests.scenarios import (
    LABEL,
    REPO,
    _gated_release,
    decide,
    history_state,
    record_outcome,
    stored,
    traversal_zip,
    zero_bomb,
)
from tests.world import World, running_world

OK, NOT_CONFIGURED, UNAVAILABLE = Availability.OK, Availability.NOT_CONFIGURED, Availability.UNAVAILABLE
ALERT_ROUTES = ("/repos/acme/api/code-scanning/alerts", "/repos/acme/api/dependabot/alerts",
                "/repos/acme/api/secret-scanning/alerts")  # fmt: skip


def run_history(world: World) -> None:
    """v1.1 goes out fine (its coverage and load test become the baseline); v1.2 goes out and fails.

    The security alerts of the scenario are opened only after both (alerts are repository-wide).
    """
    repo = world.state.repo(REPO)
    alerts = (repo.code_scanning_alerts, repo.dependabot_alerts, repo.secret_scanning_alerts)
    repo.code_scanning_alerts, repo.dependabot_alerts, repo.secret_scanning_alerts = [], [], []
    assert decide(world, "v1.1").answer == "approved", world.check_run("v1.1").output["summary"][:1500]
    record_outcome(world, "v1.1", "success")
    assert decide(world, "v1.2").answer == "approved", world.check_run("v1.2").output["summary"][:1500]
    record_outcome(world, "v1.2", "failure")
    repo.code_scanning_alerts, repo.dependabot_alerts, repo.secret_scanning_alerts = alerts


# --- (a) every source populated ------------------------------------------------------------------


def test_every_source_populated_gives_the_expected_evidence(database_url: str) -> None:
    state = history_state()
    with running_world(database_url, state) as world:
        run_history(world)
        _, baseline_v11 = stored(world, "v1.1")[1:]
        decide(world, LABEL)
        ev, decision, baseline = stored(world, LABEL)
    _, c1 = state.deployment("v1.1")
    _, release = state.deployment(LABEL)

    assert all(part.availability is OK for part in ev.parts().values()), {
        n: (p.availability, p.reason) for n, p in ev.parts().items()}
    assert Evidence.from_json(ev.to_json()) == ev  # what is stored round-trips

    # checks: latest per name, gonogo's own run excluded, re-runs counted, statuses beside check runs
    checks = {c.name: c for c in ev.checks.checks}
    assert sorted(checks) == ["build", "ci/jenkins", "integration", "lint", "security/snyk"]
    assert checks["integration"].conclusion == "success" and checks["integration"].attempts == 2
    assert checks["build"].duration_s == pytest.approx(120, abs=1) and checks["build"].kind == "check_run"
    assert checks["ci/jenkins"].kind == "status" and checks["ci/jenkins"].conclusion == "success"
    assert checks["ci/jenkins"].url == "https://jenkins.example.com/812"
    assert checks["ci/jenkins"].attempts == 1  # pending then success is one build, not a re-run
    assert [c.name for c in ev.checks.rerun] == ["integration"] and not ev.checks.failed and not ev.checks.pending
    assert {p.source for p in ev.checks.provenance} == {"github.checks", "github.statuses"}

    # tests: merged over three files in two artifacts; the api test that failed then passed on rerun is flaky
    t = ev.tests
    assert (t.total, t.passed, t.failed, t.errored, t.skipped, t.files) == (150, 147, 1, 0, 2, 3)
    [failure] = t.failures
    assert (failure.classname, failure.name, failure.file, failure.line) == (
        "tests.test_unit", "test_case_0", "tests/test_unit.py", 10)
    assert [(f.classname, f.name) for f in t.flaky] == [("tests.test_api", "test_case_0")]
    assert {p.detail for p in t.provenance} == {
        "test-results:junit-unit.xml", "test-results:junit-api.xml", "test-results-rerun:junit-api-rerun.xml"}

    # coverage: against the baseline stored with v1.1, the last successful deployment
    assert baseline_v11 is not None and baseline_v11["coverage"] == pytest.approx(0.80)
    c = ev.coverage
    assert c.format == "cobertura" and c.line_rate == pytest.approx(0.86)
    assert c.baseline_line_rate == pytest.approx(0.80) and c.delta == pytest.approx(0.06)
    assert (c.lines_valid, c.lines_covered) == (1000, 860)

    # security: alerts on this ref (not another branch's, not dismissed/fixed/resolved) + SARIF + Trivy,
    # the code-scanning alert that SARIF reports again at the same place counted once
    s = ev.security
    assert s.sources == {"code_scanning": OK, "dependabot": OK, "secret_scanning": OK, "sarif": OK, "trivy": OK}
    assert s.counts == {"critical": 3, "high": 3, "medium": 2}
    assert s.secrets_open == 1
    by_rule = {(f.source, f.rule_id) for f in s.findings}
    assert by_rule == {
        ("code_scanning", "py/sql-injection"), ("code_scanning", "py/clear-text-logging"),
        ("dependabot", "GHSA-aaaa-bbbb-cccc"), ("dependabot", "GHSA-dddd-eeee-ffff"),
        ("secret_scanning", "aws_access_key_id"), ("sarif", "py/path-injection"),
        ("trivy", "CVE-2024-1111"), ("trivy", "CVE-2024-2222"),
    }
    assert [f.severity for f in s.findings][:3] == ["critical"] * 3  # worst first
    assert all(f.url for f in s.findings if f.source != "sarif")  # each GitHub alert and Trivy finding links out
    assert {p.source for p in s.provenance} >= {"github.code_scanning", "github.dependabot", "github.secret_scanning"}

    # performance: the JMeter run (more samples than the k6 summary beside it) against v1.1's stored run
    p = ev.performance
    assert p.tool == "jmeter" and p.method == "mann-whitney" and p.baseline_sha == c1.sha
    assert "2 load-test reports" in p.reason
    tx = {x.name: x for x in p.transactions}
    assert tx["GET /orders"].significant is True and tx["GET /orders"].regression_pct == pytest.approx(50, abs=15)
    assert tx["POST /checkout"].significant is False and abs(tx["POST /checkout"].regression_pct or 0) < 10
    assert p.overall is not None and p.overall.samples == 600 and p.overall.baseline_p95_ms is not None
    assert baseline is not None and baseline["perf"]["tool"] == "jmeter"  # this run becomes the next baseline

    # change: v1.1...release, since v1.2 failed; api/orders.py was also in the failed v1.2
    ch = ev.change
    assert ch.base_sha == c1.sha and ch.commits == 3 and ch.files_changed == 3
    assert (ch.additions, ch.deletions, ch.subsystems, ch.authors) == (8 + 40 + 6 + 35, 3 + 12, 3, 2)
    assert ch.author_experience == 3  # bob's earlier commits in the repository
    assert (ch.directories, ch.fix_commits) == (3, 0)  # api, db/migrations, tests; no message says "fix"
    assert ch.has_migration is True and ch.hotspots == ["api/orders.py"]
    assert 0 < (ch.entropy or 0) < 1
    assert any(pr.source == "gonogo.history" for pr in ch.provenance)
    # where the lead time for changes starts: the oldest of the three compared commits
    repo, _ = state.deployment(LABEL)
    in_change = set(ancestry(repo, release.sha)) - set(ancestry(repo, c1.sha))
    oldest = min(repo.commits[sha].date for sha in in_change)
    assert ch.first_commit_at == datetime.fromtimestamp(oldest, UTC).replace(microsecond=0)
    assert ev.to_history_row()["first_commit_at"] == ch.first_commit_at.isoformat()

    # operational: from gonogo's own history of the environment
    op = ev.operational
    assert op.deploys_last_24h == 2 and op.env_failure_rate_30d == pytest.approx(0.5)
    assert op.hours_since_last_deploy == pytest.approx(2.0, abs=0.01)
    assert (op.hour_utc, op.weekday) == (ev.created_at.hour, ev.created_at.weekday())

    # and the decision used all of it: the failing test blocks
    assert decision["verdict"] == "no-go" and "GNG-TEST-001" in decision["blocking"]
    assert release.sha == ev.sha


# --- (b) code scanning off -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["disabled", "no_analysis"])
def test_code_scanning_off_is_not_configured_and_the_rest_still_counts(database_url: str, mode: str) -> None:
    with running_world(database_url, history_state(code_scanning=mode)) as world:
        decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    s = ev.security
    assert s.sources["code_scanning"] is NOT_CONFIGURED
    assert {k: v for k, v in s.sources.items() if k != "code_scanning"} == {
        "dependabot": OK, "secret_scanning": OK, "sarif": OK, "trivy": OK}
    assert s.availability is OK and "code scanning" in s.reason
    # the SARIF artifact still reports py/sql-injection; the code-scanning-only medium alert is gone
    assert s.counts == {"critical": 3, "high": 3, "medium": 1}
    assert not [f for f in s.findings if f.source == "code_scanning"]
    assert decision["verdict"] in ("no-go", "escalate", "go")  # the evaluation completed and was stored


# --- (c) artifacts endpoint failing --------------------------------------------------------------


def test_failing_artifacts_endpoint_marks_parts_unavailable_and_escalates(database_url: str) -> None:
    state = history_state()
    # nothing in this release fails outright, so the missing evidence alone decides the outcome
    _, release = state.deployment(LABEL)
    state.repo(REPO).check_runs = [r for r in state.repo(REPO).check_runs if r.head_sha != release.sha]
    state.repo(REPO).code_scanning_alerts = []
    state.repo(REPO).dependabot_alerts = []
    state.repo(REPO).secret_scanning_alerts = []
    with running_world(database_url, state) as world:
        world.state.inject("GET", "/repos/acme/api/actions/runs/*/artifacts", "status", status=500, times=None)
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        run = world.check_run(LABEL)
        failed = world.state.calls("GET", "/repos/acme/api/actions/runs/*/artifacts")
    assert failed and all(c.status == 500 for c in failed)
    for part in (ev.tests, ev.coverage, ev.performance):
        assert part.availability is UNAVAILABLE
        assert "could not be read" in part.reason and "500" in part.reason
    # SARIF/Trivy reports might have been in those artifacts: security is not claimed complete
    assert ev.security.sources["artifacts"] is UNAVAILABLE and ev.security.availability is UNAVAILABLE
    assert ev.checks.ok and ev.change.ok and ev.operational.ok  # the other sources were unaffected
    assert decision["verdict"] == "escalate" and decision["action"] == "escalate"
    assert gate.answer is None and gate.waiting  # never approved on missing evidence
    assert run.conclusion == "action_required"
    unknown = {f["rule_id"] for f in decision["findings"] if f["status"] == "unknown"}
    assert {"GNG-TEST-001", "GNG-TEST-005", "GNG-SEC-001"} <= unknown


# --- (d) hostile artifacts -------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["traversal", "bomb"])
def test_hostile_artifact_becomes_unavailable_never_a_crash(database_url: str, hostile: str) -> None:
    state = history_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    ci = state.add_workflow_run(REPO, release.sha, name="CI")
    data = traversal_zip() if hostile == "traversal" else zero_bomb(3 << 30)
    assert len(data) < 8 << 20
    state.add_artifact(REPO, ci.id, "test-results", data)
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
        # the check run is published before the worker marks its delivery done
        world.wait(lambda: world.deliveries()[0].state != "processing", what="the delivery to finish")
        [delivery] = world.deliveries()
    assert delivery.state == "done" and delivery.attempts == 1  # handled on the first go, not a crash and retry
    expected = "'../../etc/cron.d/junit-evil.xml'" if hostile == "traversal" else "possible zip bomb"
    for part in (ev.tests, ev.coverage, ev.performance):
        # the refused archive might have held any of these: unavailable, not "not configured"
        assert part.availability is UNAVAILABLE, (part.availability, part.reason)
        assert expected in part.reason and "test-results" in part.reason
    assert decision["verdict"] != "go" and gate.answer != "approved"


# --- concurrency -----------------------------------------------------------------------------------


def test_sources_are_fetched_concurrently(database_url: str) -> None:
    """With one second of latency on each alert route, the three requests overlap in time.

    Asserted on the sandbox's own call log (arrival time and duration of each request), not on
    wall-clock totals, so a loaded machine cannot make it flaky.
    """
    with running_world(database_url, history_state()) as world:
        for route in ALERT_ROUTES:
            world.state.inject("GET", route, "latency", seconds=1.0, times=None)
        world.state.inject("GET", "/repos/acme/api/commits/*/check-runs", "latency", seconds=1.0, times=None)
        world.state.inject("GET", "/repos/acme/api/actions/run[s]", "latency", seconds=1.0, times=None)
        decide(world, LABEL)
        calls = [world.state.calls("GET", route)[0] for route in ALERT_ROUTES]
        calls.append(world.state.calls("GET", "/repos/acme/api/commits/*/check-runs")[0])
        calls.append(world.state.calls("GET", "/repos/acme/api/actions/run[s]")[0])
        ev, _, _ = stored(world, LABEL)
    assert all(c.duration >= 1.0 for c in calls)
    # every slow request arrived before any of them had finished: they were in flight together
    last_start = max(c.at for c in calls)
    first_end = min(c.at + c.duration for c in calls)
    assert last_start < first_end, [(c.path, c.at, c.duration) for c in calls]
    assert ev.security.ok and ev.checks.ok


def test_a_multi_megabyte_artifact_is_downloaded_whole(database_url: str) -> None:
    """A stored (uncompressed) zip of several megabytes streams to disk completely, not just its first buffer."""
    import io
    import zipfile

    from tests.scenarios import junit

    state = history_state(artifacts_ok=False)
    _, release = state.deployment(LABEL)
    ci = state.add_workflow_run(REPO, release.sha, name="CI")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("junit-big.xml", junit(20_000))
    assert len(buf.getvalue()) > 2 << 20
    state.add_artifact(REPO, ci.id, "test-results", buf.getvalue())
    with running_world(database_url, state) as world:
        decide(world, LABEL)
        ev, _, _ = stored(world, LABEL)
    assert ev.tests.ok and (ev.tests.total, ev.tests.passed) == (20_000, 20_000)


def test_deploying_a_tag_reads_the_default_branch_alerts(database_url: str) -> None:
    """A release workflow run on a tag still sees code-scanning alerts: the default branch's, as tags have none."""
    state = history_state()
    _, release = state.deployment(LABEL)
    release.ref = "refs/tags/v1.3.0"
    with running_world(database_url, state) as world:
        decide(world, LABEL)
        ev, _, _ = stored(world, LABEL)
        calls = world.state.calls("GET", "/repos/acme/api/code-scanning/alerts")
    assert len(calls) == 2 and not [c for c in calls if "ref" in c.query]  # the open and the dismissed alerts
    assert ev.security.sources["code_scanning"] is OK
    assert {f.rule_id for f in ev.security.findings if f.source == "code_scanning"} == {
        "py/sql-injection", "py/clear-text-logging"}


def test_history_of_the_changed_files_is_read_with_a_bounded_number_of_calls(database_url: str) -> None:
    """Kamei's history metrics of a change, from the commits and contents of its files before the base.

    After v1.1 (c1) succeeded, bob changes api/app.py (alice's, in c0 and c1) and api/models_1.py (his own,
    6 days ago). The change since c1 also holds carol's api/orders.py and bob's test and migration, none of
    which existed at c1. A later change over 20 files that existed before leaves the file metrics unknown.
    """
    state = history_state()
    with running_world(database_url, state) as world:
        run_history(world)
        repo = world.state.repo(REPO)
        c1 = repo.commits[state.deployment("v1.1")[1].sha]
        world.state.set_file(REPO, c1.sha, "api/app.py", "line\n" * 119 + "last line without newline")
        world.state.set_file(REPO, c1.sha, "api/models_1.py", "x = 1\n" * 20)
        c4 = world.state.add_commit(REPO, message="Orders on the app", author="bob", branch="main",
                                    date=world.state.now() - 600,
                                    files=[{"filename": "api/app.py", "additions": 5},
                                           {"filename": "api/models_1.py", "additions": 2, "deletions": 1}])
        _gated_release(world.state, "hist", c4.sha, age_hours=0)
        world.state.clear_calls()
        decide(world, "hist")
        listings = [c for c in world.state.calls("GET", "/repos/acme/api/commits") if "path" in c.query]
        contents = [c for c in world.state.calls("GET", "/repos/acme/api/contents/*") if c.query.get("ref")]
        ev, _, _ = stored(world, "hist")
        c5 = world.state.add_commit(REPO, message="Rename the helpers", author="bob", branch="main",
                                    files=[{"filename": f"lib/helper_{i}.py", "additions": 1} for i in range(21)])
        _gated_release(world.state, "wide", c5.sha, age_hours=0)
        decide(world, "wide")
        wide, _, _ = stored(world, "wide")

    ch = ev.change
    assert ch.base_sha == c1.sha and ch.author_experience == 3
    # api/app.py: c0 and c1 by alice; api/models_1.py: bob's groundwork; the other files have no earlier commit
    assert (ch.file_prior_changes, ch.file_developers) == (3, 2)
    # days from each file's last earlier change to the change's first commit (carol's, 3 h ago), averaged
    assert ch.file_age_days == pytest.approx((1 / 24 + (6 - 3 / 24)) / 2, abs=1e-3)
    assert ch.lines_before == 120 + 20  # files absent at c1 had no lines
    # bob's three earlier commits under api/ (none under db/ or tests/), each weighted by its age
    assert ch.author_subsystem_experience == 3
    ages = [7 - 3 / 24, 6 - 3 / 24, 5 - 3 / 24]
    assert ch.author_recent_experience == pytest.approx(sum(1 / (1 + a / 365.25) for a in ages), abs=1e-3)
    row = ev.to_history_row()
    assert (row["file_developers"], row["file_prior_changes"], row["lines_before"]) == (2, 3, 140)
    # the cost: one listing per changed file that existed before (4) and per subsystem (3), one read per file
    assert sorted(c.query["path"] for c in listings) == sorted(
        ["api/orders.py", "tests/test_orders.py", "api/app.py", "api/models_1.py", "api", "db", "tests"])
    assert all(c.query.get("sha") == c1.sha for c in listings)  # only history before the change
    assert len(contents) == 4 and all(c.query.get("ref") == c1.sha for c in contents)  # (the policy: no ref)

    w = wide.change
    assert w.ok and w.files_changed is not None and w.files_changed >= 21
    # over the bound: unknown, not zero, and said so
    assert (w.file_developers, w.file_prior_changes, w.file_age_days, w.lines_before) == (None,) * 4
    assert any("more than the 20" in p.detail for p in w.provenance)
    assert w.author_recent_experience is not None  # from the author's commit listing, which has no such bound


def test_a_changed_file_over_1_mb_leaves_its_lines_unknown_not_the_whole_history(database_url: str) -> None:
    """A lock file over 1 MB at the base: GitHub's contents API answers 403 too_large for it. Before, that one
    403 marked the files' whole earlier history unread, so every release touching a large lock file lost its
    file metrics and its confidence; now only the lines before the change are unknown."""
    state = history_state()
    with running_world(database_url, state) as world:
        run_history(world)
        repo = world.state.repo(REPO)
        c1 = repo.commits[state.deployment("v1.1")[1].sha]
        world.state.set_file(REPO, c1.sha, "api/app.py", "line\n" * 120)
        world.state.set_file(REPO, c1.sha, "api/models_1.py", "x = 1\n" * 200_000)  # 1.2 MB
        c4 = world.state.add_commit(REPO, message="Orders on the app", author="bob", branch="main",
                                    date=world.state.now() - 600,
                                    files=[{"filename": "api/app.py", "additions": 5},
                                           {"filename": "api/models_1.py", "additions": 2, "deletions": 1}])
        _gated_release(world.state, "hist", c4.sha, age_hours=0)
        decide(world, "hist")
        ev, decision, _ = stored(world, "hist")
    ch = ev.change
    assert ch.unread == [] and not any("read only in part" in r for r in decision["reasons"])
    assert (ch.file_prior_changes, ch.file_developers) == (3, 2)  # the histories were read
    assert ch.lines_before is None  # one file's size in lines is not known: unknown, never a guess


def test_unreadable_file_history_is_unknown_never_zero(database_url: str) -> None:
    """When GitHub fails the commits listings, the files' history and the author's experience are unknown,
    and the deployment is not approved on a change whose history was only read in part."""
    with running_world(database_url, history_state()) as world:
        run_history(world)
        world.state.inject("GET", "/repos/acme/api/commit[s]", "status", status=500, times=None)
        gate = decide(world, LABEL)
        ev, decision, _ = stored(world, LABEL)
    ch = ev.change
    assert ch.ok and ch.files_changed == 3  # the compare answer was read
    assert ch.unread and all("500" in why for why in ch.unread)
    assert decision["verdict"] != "go" and gate.answer != "approved"
    assert any("change evidence was read only in part" in r for r in decision["reasons"])
    assert (ch.file_developers, ch.file_prior_changes, ch.file_age_days, ch.lines_before) == (None,) * 4
    assert (ch.author_experience, ch.author_recent_experience, ch.author_subsystem_experience) == (None,) * 3
    assert any("unreadable" in p.detail for p in ch.provenance)
    row = ev.to_history_row()
    assert row["file_prior_changes"] is None and row["author_subsystem_experience"] is None
