"""Sandbox states for end-to-end tests, built through the sandbox's own API.

``release_state()`` is one repository with a previous good deployment to production and a new
release waiting on gonogo, every evidence source populated and clean. Keyword switches make it
worse in one way at a time.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from github_app import db
from github_app.db.models import DecisionRecord, Deployment, EvidenceRecord, Outcome, Review
from github_app.sandbox import SandboxState, generate_key_pair
from github_app.sandbox.webhooks import issue_comment_payload
from scorer.evidence import Evidence

if TYPE_CHECKING:
    from tests.world import World

REPO = "acme/api"
INSTALLATION = 4242
APP_ID = 31337
LABEL = "release"


def junit(total: int, failed: int = 0, skipped: int = 0, name: str = "unit") -> str:
    cases = []
    for i in range(total):
        body = ""
        if i < failed:
            body = f'<failure message="assert {i} == {i + 1}">AssertionError</failure>'
        elif i < failed + skipped:
            body = "<skipped/>"
        cases.append(
            f'<testcase classname="tests.test_{name}" name="test_case_{i}" file="tests/test_{name}.py" line="{10 + i}" '
            f'time="0.01">{body}</testcase>'
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="{name}" tests="{total}" '
        f'failures="{failed}" errors="0" skipped="{skipped}" time="1.0">{"".join(cases)}</testsuite></testsuites>'
    )


def cobertura(rate: float) -> str:
    valid = 1000
    covered = int(valid * rate)
    return (
        f'<?xml version="1.0"?><coverage line-rate="{rate:.4f}" branch-rate="{rate:.4f}" lines-valid="{valid}" '
        f'lines-covered="{covered}" version="7.4" timestamp="1700000000"><packages/></coverage>'
    )


def sarif(results: list[dict[str, Any]]) -> str:
    import json

    rules = [{"id": r["ruleId"], "properties": {"security-severity": r.get("cvss", "9.8")}} for r in results]
    runs = [{
        "tool": {"driver": {"name": "scanner", "rules": rules}},
        "results": [
            {"ruleId": r["ruleId"], "level": "error", "message": {"text": r.get("text", "bad")},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": r["path"]},
                                                  "region": {"startLine": r.get("line", 1)}}}]}
            for r in results
        ],
    }]  # fmt: skip
    return json.dumps({"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "runs": runs})


def jmeter_stats(p95: float, error_pct: float = 0.0) -> str:
    import json

    row = {
        "transaction": "Total", "sampleCount": 5000, "errorCount": int(50 * error_pct), "errorPct": error_pct,
        "meanResTime": p95 / 2, "medianResTime": p95 / 2.2, "minResTime": 5.0, "maxResTime": p95 * 2,
        "pct1ResTime": p95 * 0.8, "pct2ResTime": p95, "pct3ResTime": p95 * 1.4, "throughput": 120.0,
        "receivedKBytesPerSec": 50.0, "sentKBytesPerSec": 10.0,
    }
    checkout = dict(row, transaction="POST /checkout")
    return json.dumps({"Total": row, "POST /checkout": checkout})


def zipped(files: dict[str, str] | dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def release_state(
    *,
    failing_tests: int = 0,
    critical_vuln: bool = False,
    code_scanning: str = "enabled",
    policy: str | None = None,
    feature_branch_policy: str | None = None,
    p95_ms: float | None = None,
    checks_running: bool = False,
    failed_check: bool = False,
    reviewers_team: str = "sre",
    team_members: tuple[str, ...] = ("rita",),
    deployer: str = "dora",
    pull_request: int | None = 7,
    artifacts_ok: bool = True,
    environment: str = "production",
    extra_files: list[dict[str, Any]] | None = None,
) -> SandboxState:
    """A repository with one good deployment behind it and a release waiting on gonogo (``extra_files``: more change)."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    repo = state.add_repo(REPO, default_branch="main")
    repo.code_scanning = code_scanning
    base = state.add_commit(REPO, message="Release 1.0", author="alice", branch="main",
                            files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    head = state.add_commit(
        REPO, message="Paginate the orders endpoint", author="bob", branch="main", parents=[base.sha],
        files=[{"filename": "api/orders.py", "additions": 40, "deletions": 12},
               {"filename": "tests/test_orders.py", "additions": 35, "deletions": 0}, *(extra_files or [])],
    )  # fmt: skip
    if policy is not None:
        state.set_file(REPO, "main", ".github/gonogo.yml", policy)
    if feature_branch_policy is not None:
        state.add_commit(REPO, message="relax the gate", author="mallory", branch="relax", parents=[head.sha])
        state.set_file(REPO, "relax", ".github/gonogo.yml", feature_branch_policy)
    # the previous release went out fine
    previous = state.add_deployment(REPO, base.sha, environment, creator="alice", waiting=False)
    state.add_deployment_status(REPO, previous.id, "success")

    for name in ("build", "lint"):
        state.add_check_run(REPO, head.sha, name, conclusion="success")
    if failed_check:
        state.add_check_run(REPO, head.sha, "integration", conclusion="failure",
                            details_url="https://ci.example.com/integration/812")  # fmt: skip
    if checks_running:
        state.add_check_run(REPO, head.sha, "e2e", status="in_progress", conclusion=None)
    state.add_status(REPO, head.sha, "ci/jenkins", "success", description="Build #812 passed")

    ci = state.add_workflow_run(REPO, head.sha, name="CI", status="completed", conclusion="success")
    if artifacts_ok:
        state.add_artifact(REPO, ci.id, "test-results", zipped({
            "junit-unit.xml": junit(120, failed=failing_tests, skipped=2),
            "junit-api.xml": junit(30, name="api"),
        }))  # fmt: skip
        state.add_artifact(REPO, ci.id, "coverage", zipped({"coverage.xml": cobertura(0.86)}))
        if critical_vuln:
            state.add_artifact(REPO, ci.id, "sarif", zipped({"scan.sarif": sarif(
                [{"ruleId": "CVE-2024-0001", "path": "api/orders.py", "line": 12, "text": "remote code execution"}])}))
        if p95_ms is not None:
            state.add_artifact(REPO, ci.id, "perf", zipped({"statistics.json": jmeter_stats(p95_ms)}))
    if reviewers_team:
        for member in team_members:
            state.add_team_member("acme", reviewers_team, member)
    for login, perm in (("rita", "maintain"), (deployer, "write"), ("eve", "read")):
        state.set_collaborator(REPO, login, perm)
    if pull_request is not None:
        state.add_pull_request(REPO, pull_request, head_sha=head.sha, head_ref="orders-pagination",
                               title="Paginate the orders endpoint", user="bob")  # fmt: skip
    dep = state.add_deployment(REPO, head.sha, environment, creator=deployer, ref="main")
    dep.name = LABEL
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state


# --- richer artifacts and a multi-release history (collector acceptance, policy end to end) ------------


def junit_rerun(name: str, index: int) -> str:
    """A rerun report holding one test case that passes (as pytest-rerunfailures or a re-run job writes it)."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="{name}-rerun" tests="1" failures="0" '
        f'errors="0" skipped="0" time="0.02"><testcase classname="tests.test_{name}" name="test_case_{index}" '
        f'file="tests/test_{name}.py" line="{10 + index}" time="0.02"/></testsuite></testsuites>'
    )


def jtl(latency_ms: dict[str, float], samples: int = 300, seed: int = 7, errors: int = 0) -> str:
    """A JMeter CSV result file: ``samples`` raw samples per label around the given median latency."""
    import random

    rng = random.Random(seed)
    lines = ["timeStamp,elapsed,label,responseCode,responseMessage,threadName,success,bytes,Latency"]
    start = 1_700_000_000_000
    for i in range(samples):
        for label, median in latency_ms.items():
            elapsed = max(1, int(rng.lognormvariate(0, 0.25) * median))
            ok = not (i < errors)
            lines.append(f"{start + i * 50},{elapsed},{label},{200 if ok else 500},{'OK' if ok else 'Error'},"
                         f"Users 1-{i % 10},{'true' if ok else 'false'},512,{elapsed}")
    return "\n".join(lines) + "\n"


def k6_summary(p95: float, requests: int = 200) -> str:
    """A k6 ``--summary-export`` file with fewer samples than the JMeter run beside it."""
    import json

    return json.dumps({
        "root_group": {"name": "", "groups": [], "checks": []},
        "metrics": {
            "http_req_duration": {"avg": p95 / 2, "min": 5, "med": p95 / 2.5, "max": p95 * 3, "p(90)": p95 * 0.9,
                                  "p(95)": p95},
            "http_reqs": {"count": requests, "rate": 10.0},
            "http_req_failed": {"passes": 0, "fails": requests, "value": 0.0},
        },
    })  # fmt: skip


def trivy(vulns: list[tuple[str, str, str]], target: str = "requirements.txt") -> str:
    """A Trivy JSON report (schema 2) with (id, package, severity) vulnerabilities."""
    import json

    return json.dumps({
        "SchemaVersion": 2, "ArtifactName": ".", "ArtifactType": "filesystem",
        "Results": [{"Target": target, "Class": "lang-pkgs", "Type": "pip", "Vulnerabilities": [
            {"VulnerabilityID": vid, "PkgName": pkg, "InstalledVersion": "1.0.0", "FixedVersion": "9.9.9",
             "Severity": sev, "Title": f"{vid} in {pkg}", "PrimaryURL": f"https://avd.aquasec.com/nvd/{vid.lower()}"}
            for vid, pkg, sev in vulns
        ]}],
    })  # fmt: skip


def traversal_zip() -> bytes:
    """A zip whose member climbs out of the extraction folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/cron.d/junit-evil.xml", junit(3))
        zf.writestr("junit-ok.xml", junit(3))
    return buf.getvalue()


def zero_bomb(expanded: int = 3 << 30, name: str = "junit-huge.xml") -> bytes:
    """A zip of a few megabytes whose one member inflates to ``expanded`` zero bytes (headers say so).

    Each 16 MiB block of zeros is deflated once and repeated: a full flush makes the blocks independent.
    """
    import struct
    import zlib

    chunk = 16 << 20
    block_co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = block_co.compress(bytes(chunk)) + block_co.flush(zlib.Z_FULL_FLUSH)
    data = block * (expanded // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    fname = name.encode()
    size = expanded & 0xFFFFFFFF if expanded < (1 << 32) else 0xFFFFFFFF
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(data), size, len(fname), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(data), size, len(fname),
                          0, 0, 0, 0, 0, 0)  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(fname),
                      len(local) + len(fname) + len(data), 0)  # fmt: skip
    return local + fname + data + central + fname + end


def _gated_release(state: SandboxState, label: str, sha: str, *, age_hours: float, creator: str = "dora",
                   artifacts: dict[str, dict[str, str]] | None = None) -> Any:
    """A deployment of ``sha`` waiting on gonogo, created ``age_hours`` ago, with its CI run's artifacts."""
    if artifacts:
        ci = state.add_workflow_run(REPO, sha, name="CI", status="completed", conclusion="success")
        for name, files in artifacts.items():
            state.add_artifact(REPO, ci.id, name, zipped(files))
    dep = state.add_deployment(REPO, sha, "production", creator=creator, ref="main")
    dep.created_at = state.now() - age_hours * 3600
    dep.name = label
    state.named_deployments[label] = (REPO, dep.id)
    return dep


BASE_P95_LATENCY = {"GET /orders": 120.0, "POST /checkout": 200.0}
SLOW_P95_LATENCY = {"GET /orders": 180.0, "POST /checkout": 200.0}  # /orders 50 % slower


def history_state(*, code_scanning: str = "enabled", artifacts_ok: bool = True) -> SandboxState:
    """Three releases to production, each gated by gonogo, every evidence source populated on the last.

    Timeline (oldest first): c0 deployed long ago (GitHub says success); ``v1.1`` (c1) 3 h ago with a
    coverage and load-test baseline; ``v1.2`` (c2) 2 h ago touching api/orders.py (the test records it
    as failed); ``release`` (c3) now: a second change to api/orders.py plus a migration, with failing,
    flaky, security and slower load-test evidence.
    """
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    repo = state.add_repo(REPO, default_branch="main")
    repo.code_scanning = code_scanning
    for login, perm in (("rita", "maintain"), ("dora", "write")):
        state.set_collaborator(REPO, login, perm)
    day = 86400
    c0 = state.add_commit(REPO, message="Release 1.0", author="alice", branch="main", date=state.now() - 9 * day,
                          files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    old = state.add_deployment(REPO, c0.sha, "production", creator="alice", waiting=False)
    old.created_at = state.now() - 8 * day
    state.add_deployment_status(REPO, old.id, "success")
    # bob has history in the repository before the compared range (author experience)
    for i in range(3):
        state.add_commit(REPO, message=f"Orders groundwork {i}", author="bob", branch="main",
                         date=state.now() - (7 - i) * day, files=[{"filename": f"api/models_{i}.py", "additions": 20}])
    c1 = state.add_commit(REPO, message="Release 1.1", author="alice", branch="main", date=state.now() - 4 * 3600,
                          files=[{"filename": "api/app.py", "additions": 10, "deletions": 4}])  # fmt: skip
    c2 = state.add_commit(REPO, message="Tune orders query", author="carol", branch="main",
                          date=state.now() - 3 * 3600,
                          files=[{"filename": "api/orders.py", "additions": 8, "deletions": 3}])  # fmt: skip
    state.add_commit(REPO, message="Index orders by customer", author="bob", branch="main", date=state.now() - 3600,
                     files=[{"filename": "db/migrations/0002_orders_index.sql", "status": "added", "additions": 6}])
    c3 = state.add_commit(
        REPO, message="Paginate the orders endpoint", author="bob", branch="main", date=state.now() - 1800,
        files=[{"filename": "api/orders.py", "additions": 40, "deletions": 12},
               {"filename": "tests/test_orders.py", "additions": 35}],
    )  # fmt: skip
    clean = {"junit-unit.xml": junit(50), "coverage.xml": cobertura(0.80)}
    _gated_release(state, "v1.1", c1.sha, age_hours=3, artifacts={
        "test-results": clean, "perf": {"results.jtl": jtl(BASE_P95_LATENCY, seed=1)}})  # fmt: skip
    for name in ("build", "lint"):
        state.add_check_run(REPO, c1.sha, name, conclusion="success")
        state.add_check_run(REPO, c2.sha, name, conclusion="success")
    _gated_release(state, "v1.2", c2.sha, age_hours=2, artifacts={"test-results": clean})

    # the release under test: every source populated
    state.add_check_run(REPO, c3.sha, "build", conclusion="success", started_at=state.now() - 300,
                        completed_at=state.now() - 180)  # fmt: skip
    state.add_check_run(REPO, c3.sha, "lint", conclusion="success")
    state.add_check_run(REPO, c3.sha, "integration", conclusion="failure", started_at=state.now() - 900,
                        completed_at=state.now() - 800)  # fmt: skip
    state.add_check_run(REPO, c3.sha, "integration", conclusion="success", started_at=state.now() - 600,
                        completed_at=state.now() - 500, details_url="https://ci.example.com/integration/2")  # fmt: skip
    state.add_status(REPO, c3.sha, "ci/jenkins", "pending")
    state.add_status(REPO, c3.sha, "ci/jenkins", "success", target_url="https://jenkins.example.com/812")
    state.add_status(REPO, c3.sha, "security/snyk", "success")
    artifacts: dict[str, dict[str, str]] = {
        "test-results": {"junit-unit.xml": junit(120, failed=1, skipped=2), "junit-api.xml": junit(30, failed=1, name="api")},
        "test-results-rerun": {"junit-api-rerun.xml": junit_rerun("api", 0)},
        "coverage": {"coverage.xml": cobertura(0.86)},
        "security-reports": {
            "codeql.sarif": sarif([
                {"ruleId": "py/sql-injection", "path": "api/orders.py", "line": 12, "cvss": "8.1"},
                {"ruleId": "py/path-injection", "path": "api/files.py", "line": 7, "cvss": "9.8"},
            ]),
            "trivy-fs.json": trivy([("CVE-2024-1111", "openssl-py", "CRITICAL"), ("CVE-2024-2222", "urllib3", "HIGH")]),
        },
        "perf": {"results.jtl": jtl(SLOW_P95_LATENCY, seed=2), "k6-summary-export.json": k6_summary(150.0)},
    }
    _gated_release(state, LABEL, c3.sha, age_hours=0, creator="dora", artifacts=artifacts if artifacts_ok else None)
    repo.code_scanning_alerts = [
        {"number": 1, "rule_id": "py/sql-injection", "severity": "error", "security_severity": "high",
         "path": "api/orders.py", "start_line": 12},
        {"number": 2, "rule_id": "py/clear-text-logging", "severity": "warning", "security_severity": "medium",
         "path": "api/app.py", "start_line": 40},
        {"number": 3, "rule_id": "py/xss", "severity": "error", "security_severity": "critical",
         "path": "api/views.py", "start_line": 3, "ref": "refs/heads/relax"},  # another branch: not this release
        {"number": 4, "rule_id": "py/weak-crypto", "severity": "error", "security_severity": "high",
         "path": "api/crypto.py", "start_line": 9, "state": "dismissed"},
    ]  # fmt: skip
    repo.dependabot_alerts = [
        {"number": 1, "package": "jinja2", "severity": "medium", "ghsa_id": "GHSA-aaaa-bbbb-cccc"},
        {"number": 2, "package": "requests", "severity": "high", "ghsa_id": "GHSA-dddd-eeee-ffff"},
        {"number": 3, "package": "django", "severity": "critical", "state": "fixed"},
    ]  # fmt: skip
    repo.secret_scanning_alerts = [
        {"number": 1, "secret_type": "aws_access_key_id", "state": "open"},
        {"number": 2, "secret_type": "github_personal_access_token", "state": "resolved"},
    ]  # fmt: skip
    return state


SLOWER_LATENCY = {"GET /orders": 170.0, "POST /checkout": 280.0}  # every transaction about 40 % slower


def perf_state(*, policy: str | None = None, latency: dict[str, float] | None = None) -> SandboxState:
    """A clean release whose load test runs slower than the one stored with the last good deployment.

    ``v1.1`` (3 h ago) carries the baseline load test; ``release`` is identical in every other way.
    Gate ``v1.1`` and record its success before gating ``release``.
    """
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    state.add_repo(REPO, default_branch="main")
    state.set_collaborator(REPO, "dora", "write")
    if policy is not None:
        state.set_file(REPO, "main", ".github/gonogo.yml", policy)
    c0 = state.add_commit(REPO, message="Release 1.0", author="bob", branch="main", date=state.now() - 9 * 86400,
                          files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    old = state.add_deployment(REPO, c0.sha, "production", creator="bob", waiting=False)
    old.created_at = state.now() - 8 * 86400
    state.add_deployment_status(REPO, old.id, "success")
    c1 = state.add_commit(REPO, message="Release 1.1", author="bob", branch="main", date=state.now() - 4 * 3600,
                          files=[{"filename": "api/app.py", "additions": 10, "deletions": 4}])  # fmt: skip
    c2 = state.add_commit(REPO, message="Cache orders", author="bob", branch="main", date=state.now() - 1800,
                          files=[{"filename": "api/orders.py", "additions": 30, "deletions": 6},
                                 {"filename": "tests/test_orders.py", "additions": 20}])  # fmt: skip
    for sha in (c1.sha, c2.sha):
        for name in ("build", "lint"):
            state.add_check_run(REPO, sha, name, conclusion="success")
    clean = {"junit-unit.xml": junit(80), "coverage.xml": cobertura(0.85)}
    _gated_release(state, "v1.1", c1.sha, age_hours=3, artifacts={
        "test-results": clean, "perf": {"results.jtl": jtl(BASE_P95_LATENCY, seed=1)}})  # fmt: skip
    _gated_release(state, LABEL, c2.sha, age_hours=0, artifacts={
        "test-results": clean, "perf": {"results.jtl": jtl(latency or SLOWER_LATENCY, seed=2)}})  # fmt: skip
    return state


# --- driving a running world (tests.world) and reading what the app stored ----------------------------


def stored(world: World, label: str) -> tuple[Evidence, dict[str, Any], dict[str, Any] | None]:
    """The Evidence, decision JSON and baseline the app stored for a scenario deployment."""
    _, dep = world.state.deployment(label)
    engine = db.make_engine(world.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(Deployment).where(Deployment.sha == dep.sha)).one()
            evidence = conn.execute(select(EvidenceRecord).where(EvidenceRecord.deployment_id == row.id)
                                    .order_by(EvidenceRecord.id.desc())).first()  # fmt: skip
            decision = conn.execute(select(DecisionRecord.data).where(DecisionRecord.id == row.decision_id)).scalar()
    finally:
        engine.dispose()
    assert evidence is not None and decision is not None, f"nothing stored for {label}"
    return Evidence.model_validate(evidence.data), decision, evidence.baseline


def record_outcome(world: World, label: str, outcome: str, after: timedelta = timedelta(minutes=30)) -> None:
    """Insert the outcome row the deployment_status handler would write, ``after`` the deployment."""
    _, dep = world.state.deployment(label)
    engine = db.make_engine(world.database_url)
    try:
        with engine.begin() as conn:
            created = conn.execute(select(Deployment.created_at).where(Deployment.sha == dep.sha)).scalar_one()
            conn.execute(Outcome.__table__.insert().values(
                repository=REPO, environment="production", sha=dep.sha, outcome=outcome, source="manual",
                source_key=f"test:{label}", observed_at=created + after, detail={},
            ))  # fmt: skip
    finally:
        engine.dispose()


def decide(world: World, label: str) -> Any:
    """Fire the protection-rule webhook for ``label`` and wait for gonogo's published decision."""
    world.request_gate(label)
    return world.wait_decided(label, timeout=60)


# --- reviewers answering on the release's pull request (#7) ------------------------------------------

TEAM = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
      four_eyes: true
"""


def comment(world: World, login: str, body: str) -> None:
    """``login`` writes ``body`` on the release's pull request; wait until gonogo has handled it."""
    payload = issue_comment_payload(world.state, REPO, 7, body, login)
    assert world.send("issue_comment", payload).status_code == 202
    world.settle()


def replies(world: World) -> list[str]:
    """The comments on the release's pull request, oldest first."""
    return [c.body for c in world.state.comments(REPO, 7)]


def reviews(world: World) -> list[Any]:
    """Every attempt a human made to decide, in order."""
    return world.query(select(Review).order_by(Review.id))
