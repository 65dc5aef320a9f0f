"""`gonogo assess --artifacts DIR` decides like the app does for the same evidence through the sandbox.

How the comparison is made honest. Offline, gonogo sees only the artifact folder: tests, coverage,
security reports and load-test results; checks, change and operational history are "not configured"
and their rules are skipped. The app also reads those from GitHub and its database, so the two can
only be compared where they see the same thing:

* the same files: each case folder is built from tests/fixtures/corpus/artifacts and the very same files
  are uploaded as one workflow artifact of the deployed commit;
* the same policy: one file, passed to ``assess --policy`` and committed as .github/gonogo.yml on the
  default branch. It turns off the weekday rule (GNG-OPS-003) only, because the app decides at the
  wall-clock time of the test run and a weekend run must not change the verdict;
* the extra app-side evidence is kept neutral: the commit's checks pass, the change is small and
  covered by tests, and the repository's own code-scanning / Dependabot / secret-scanning alerts are
  off, so security evidence comes from the uploaded reports alone;
* then the verdict (and the exit code) must agree, and every finding of a rule that reads only
  artifact evidence (its parts are among tests, coverage, security, performance) must agree in
  status, observed value and threshold. Rules reading checks, change or history are not compared:
  offline cannot know them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from github_app.sandbox import SandboxState, generate_key_pair
from rules.catalog import CATALOG
from tests.helpers import CORPUS, ROOT
from tests.scenarios import APP_ID, INSTALLATION, LABEL, REPO, decide, stored, zipped
from tests.world import running_world

ARTIFACT_PARTS = {"tests", "coverage", "security", "performance"}
ARTIFACT_RULES = sorted(r.id for r in CATALOG if set(r.parts) <= ARTIFACT_PARTS)
EXIT = {"go": 0, "no-go": 1, "escalate": 3}
POLICY = """\
extends: default
environments:
  "*":
    rules:
      GNG-OPS-003: off
"""

GREEN = [
    "junit/go-junit-report/019-report.xml",  # go test, all passing
    "coverage/reportgenerator-testprojects/C++/Reports/lcov.info",  # 89 % line coverage
    "sarif/sarif-tutorials/ExceptionalConditions/One run empty results.sarif",  # a scan with no results
]
CASES: dict[str, tuple[list[str], str]] = {
    "clean": (GREEN, "go"),
    "failing-tests": ([*GREEN, "junit/go-junit-report/001-report.xml"], "no-go"),
    "critical-vulnerability": ([*GREEN, "vulnerabilities/trivy/alpine-39-high-critical.json.golden"], "no-go"),
    "high-vulnerability": ([*GREEN, "sarif/tool-goldens/grype_TestSarifPresenter_directory.golden"], "escalate"),
    "slow-load-test": ([*GREEN, "performance/jmeter/statistics/2022-05-13T08-25-03_3dafce4190.json"], "escalate"),
}


def build_folder(corpus: Path, files: list[str], into: Path) -> Path:
    """Copy corpus files into a fresh folder (names kept; JMeter statistics named as JMeter writes them)."""
    into.mkdir()
    for rel in files:
        src = corpus / "artifacts" / rel
        name = "statistics.json" if "/statistics/" in rel else src.name
        shutil.copyfile(src, into / name)
    return into


def assess(folder: Path, policy: Path) -> tuple[int, dict[str, Any]]:
    """Run the real CLI, as a CI job would."""
    proc = subprocess.run(
        [sys.executable, "-m", "github_app", "assess", "--artifacts", str(folder), "--policy", str(policy),
         "--environment", "production", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1, 3), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def neutral_state(folder: Path) -> SandboxState:
    """A small, tested change whose checks pass, with the folder's files as its only workflow artifact."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    repo = state.add_repo(REPO, default_branch="main")
    repo.code_scanning, repo.dependabot, repo.secret_scanning = "disabled", False, False
    state.set_file(REPO, "main", ".github/gonogo.yml", POLICY)
    state.set_collaborator(REPO, "dora", "write")
    state.add_commit(REPO, message="Release 1.0", author="bob", branch="main", date=state.now() - 30 * 86400,
                     files=[{"filename": "api/app.py", "status": "added", "additions": 300}])  # fmt: skip
    for i in range(6):  # the author knows the code
        state.add_commit(REPO, message=f"Groundwork {i}", author="bob", branch="main", date=state.now() - (20 - i) * 86400,
                         files=[{"filename": f"api/part_{i}.py", "additions": 15}])  # fmt: skip
    previous = state.add_deployment(REPO, state.repo(REPO).branches["main"], "production", creator="bob", waiting=False)
    previous.created_at = state.now() - 2 * 86400
    state.add_deployment_status(REPO, previous.id, "success")
    head = state.add_commit(REPO, message="Cache orders", author="bob", branch="main", date=state.now() - 1800,
                            files=[{"filename": "api/orders.py", "additions": 30, "deletions": 6},
                                   {"filename": "tests/test_orders.py", "additions": 20}])  # fmt: skip
    for name in ("build", "lint"):
        state.add_check_run(REPO, head.sha, name, conclusion="success")
    ci = state.add_workflow_run(REPO, head.sha, name="CI")
    state.add_artifact(REPO, ci.id, "validation", zipped({p.name: p.read_bytes() for p in folder.iterdir()}))
    dep = state.add_deployment(REPO, head.sha, "production", creator="dora", ref="main")
    state.named_deployments[LABEL] = (REPO, dep.id)
    return state


def artifact_findings(findings: list[dict[str, Any]]) -> dict[str, tuple[Any, Any, Any]]:
    return {f["rule_id"]: (f["status"], f["value"], f["threshold"]) for f in findings if f["rule_id"] in ARTIFACT_RULES}


@pytest.mark.parametrize("case", list(CASES))
def test_offline_assess_and_the_app_agree(case: str, corpus: Path, tmp_path: Path, database_url: str) -> None:
    files, expected = CASES[case]
    folder = build_folder(corpus, files, tmp_path / case)
    policy = tmp_path / "gonogo.yml"
    policy.write_text(POLICY, encoding="utf-8")

    code, offline = assess(folder, policy)
    with running_world(database_url, neutral_state(folder)) as world:
        gate = decide(world, LABEL)
        _, app, _ = stored(world, LABEL)

    assert offline["problems"] == []  # every file was read offline ...
    assert app["evidence"]["tests"]["availability"] == "ok"  # ... and by the app
    assert offline["decision"] == app["verdict"] == expected, (offline["reasons"], app["reasons"])
    assert code == EXIT[expected]
    assert gate.answer == {"go": "approved", "no-go": "rejected", "escalate": None}[expected]
    assert sorted(offline["blocking"]) == sorted(app["blocking"])
    assert artifact_findings(offline["findings"]) == artifact_findings(app["findings"])
    for part in ("tests", "coverage", "performance"):
        off, on = offline["evidence"][part], app["evidence"][part]
        assert off["availability"] == on["availability"], part
    assert offline["evidence"]["security"]["counts"] == app["evidence"]["security"]["counts"]


def test_the_corpus_is_where_the_tests_expect_it() -> None:
    missing = [rel for files, _ in CASES.values() for rel in files if not (CORPUS / "artifacts" / rel).is_file()]
    assert missing == []
