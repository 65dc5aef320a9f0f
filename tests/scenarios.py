"""Sandbox states for end-to-end tests, built through the sandbox's own API.

``release_state()`` is one repository with a previous good deployment to production and a new
release waiting on gonogo, every evidence source populated and clean. Keyword switches make it
worse in one way at a time.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from github_app.sandbox import SandboxState, generate_key_pair

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


def zipped(files: dict[str, str]) -> bytes:
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
) -> SandboxState:
    """A repository with one good deployment behind it and a release waiting on gonogo."""
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
               {"filename": "tests/test_orders.py", "additions": 35, "deletions": 0}],
    )  # fmt: skip
    if policy is not None:
        state.set_file(REPO, "main", ".github/gonogo.yml", policy)
    if feature_branch_policy is not None:
        state.add_commit(REPO, message="relax the gate", author="mallory", branch="relax", parents=[head.sha])
        state.set_file(REPO, "relax", ".github/gonogo.yml", feature_branch_policy)
    # the previous release went out fine
    previous = state.add_deployment(REPO, base.sha, "production", creator="alice", waiting=False)
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
    dep = state.add_deployment(REPO, head.sha, "production", creator=deployer, ref="main")
    dep.name = LABEL
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state
