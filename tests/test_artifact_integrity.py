"""A report that cannot be read completely counts as missing evidence, and no file is dropped without a word.

Each case puts a good report of one format beside a real report of the same format cut short at
test time (the way a killed job or a partial upload leaves it), and runs ``gonogo assess`` on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from github_app.commands.assess import assess
from scorer.evidence import Availability
from scorer.parsers import ArtifactFile, parse_artifacts
from tests.helpers import CORPUS as VENDORED

CORPUS = VENDORED / "artifacts"
NOW = "2025-06-04T10:00:00+00:00"
GREEN_JUNIT = CORPUS / "junit" / "enricomi" / "junit-xml" / "pytest" / "junit.gloo.standalone.xml"
GREEN_SARIF = CORPUS / "sarif" / "tool-goldens" / "trivy_alpine-310.sarif.golden"


@pytest.fixture(autouse=True)
def _corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .github/gonogo.yml is picked up from the checkout


def _truncate(src: Path, dest: Path, after: bytes | None = None, keep: float = 0.5) -> None:
    """Write ``src`` cut just after the first ``after`` (or at ``keep`` of its length) to ``dest``."""
    data = src.read_bytes()
    cut = data.index(after) + len(after) if after else int(len(data) * keep)
    dest.write_bytes(data[:cut])


# the corpus' good coverage (69 %) and load-test (p95 1.6 s) files would miss the default pack's
# thresholds; a team with such numbers sets its own, and the cases need a green baseline
POLICY = "environments:\n  production:\n    rules: {GNG-TEST-005: {threshold: 60}, GNG-PERF-001: {threshold: 5000}}\n"


def _run(folder: Path, fmt: str = "json") -> tuple[int, str, str]:
    policy = folder.parent / "gonogo.yml"
    policy.write_text(POLICY)
    result = CliRunner().invoke(assess, ["--artifacts", str(folder), "--format", fmt, "--now", NOW, "--policy", str(policy)])
    return result.exit_code, result.stdout, result.stderr


# format -> (part, good file, truncated source file, cut after these bytes (None: half the file), name of the cut file)
CASES = {
    "junit": ("tests", GREEN_JUNIT, CORPUS / "junit/enricomi/junit-xml/pytest/junit.fail.xml", b"<failure",
              "TEST-spark.xml"),
    "trx": ("tests", CORPUS / "junit/enricomi/trx/nunit/FluentValidation.Tests.trx",
            CORPUS / "junit/enricomi/trx/xunit/dotnet-trx.trx", b'outcome="Failed"', "unit.trx"),
    "sarif": ("security", GREEN_SARIF, CORPUS / "sarif/tool-goldens/grype_TestSarifPresenter_image.golden", None,
              "codeql-javascript.sarif"),
    "trivy": ("security", CORPUS / "vulnerabilities/trivy/alpine-distroless.json.golden",
              CORPUS / "vulnerabilities/trivy/alpine-39-high-critical.json.golden", None, "trivy-image.json"),
    "coverage": ("coverage", CORPUS / "coverage/reportgenerator-docs/Cobertura/Cobertura.xml",
                 CORPUS / "coverage/reportgenerator-docs/Cobertura/Cobertura.xml", None, "web-coverage.xml"),
    "jmeter": ("performance", CORPUS / "performance/jmeter/statistics/2022-05-13T08-25-03_3dafce4190.json",
               CORPUS / "performance/jmeter/statistics/2022-05-14T05-02-43_b9a4a68666.json", None,
               "statistics.json"),
}  # fmt: skip


def _corrupt(src: Path, dest: Path) -> None:
    """Write ``src`` with a run of garbage bytes in its middle, as a bad disk or transfer leaves it."""
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 3] + b'\x00\xff\xfe"<}]' + data[len(data) // 3 :])


def _case_folder(tmp_path: Path, fmt: str, with_truncated: bool, damage: str = "truncated") -> Path:
    _, good, bad, after, bad_name = CASES[fmt]
    folder = tmp_path / f"{fmt}-{damage if with_truncated else 'good'}"
    folder.mkdir()
    for f in {GREEN_JUNIT, GREEN_SARIF, good}:
        shutil.copy(f, folder / f.name)
    if with_truncated:
        sub = folder / "job-2"  # a second job's upload, as actions/download-artifact lays it out
        sub.mkdir()
        if damage == "truncated":
            _truncate(bad, sub / bad_name, after)
        else:
            _corrupt(bad, sub / bad_name)
    return folder


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
@pytest.mark.parametrize("fmt", sorted(CASES))
def test_a_truncated_report_beside_a_good_one_never_goes(fmt: str, damage: str, tmp_path: Path) -> None:
    part, *_ , bad_name = CASES[fmt]
    code, out, _ = _run(_case_folder(tmp_path, fmt, with_truncated=False))
    good = json.loads(out)
    assert code == 0 and good["decision"] == "go", good["reasons"]

    code, out, _ = _run(_case_folder(tmp_path, fmt, with_truncated=True, damage=damage))
    data = json.loads(out)
    assert data["decision"] != "go" and code in (1, 3)
    assert data["evidence"][part]["availability"] == "incomplete"
    refused = data["refused"]
    assert [r["path"] for r in refused] == [f"job-2/{bad_name}"]
    assert refused[0]["reason"]
    assert data["confidence"] < good["confidence"]
    unknown = [f["rule_id"] for f in data["findings"] if f["status"] == "unknown"]
    assert any(bad_name in f["message"] for f in data["findings"] if f["rule_id"] in unknown)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_text_report_names_the_refused_file_and_why(fmt: str, tmp_path: Path) -> None:
    *_, bad_name = CASES[fmt]
    code, out, _ = _run(_case_folder(tmp_path, fmt, with_truncated=True), fmt="text")
    assert code in (1, 3)
    section = out.split("Report files that could not be read", 1)[1]
    line = next(line for line in section.splitlines() if bad_name in line)
    assert f"job-2/{bad_name}" in line and len(line) > len(f"  - job-2/{bad_name}") + 10


def test_junit_truncated_after_a_failure_beside_a_valid_trx_escalates(tmp_path: Path) -> None:
    folder = tmp_path / "ci"
    folder.mkdir()
    shutil.copy(CORPUS / "junit/enricomi/trx/nunit/FluentValidation.Tests.trx", folder / "unit.trx")
    _truncate(CORPUS / "junit/enricomi/junit-xml/pytest/junit.fail.xml", folder / "TEST-integration.xml", b"<failure")
    code, out, _ = _run(folder)
    data = json.loads(out)
    assert code == 3 and data["decision"] == "escalate"
    assert data["confidence"] < 1.0
    test_rules = {f["rule_id"]: f for f in data["findings"] if f["rule_id"] in ("GNG-TEST-001", "GNG-TEST-002")}
    assert {f["status"] for f in test_rules.values()} == {"unknown"}
    assert "TEST-integration.xml" in test_rules["GNG-TEST-001"]["message"]
    assert any("TEST-integration.xml" in r for r in data["reasons"])


def test_a_finding_in_the_readable_sarif_still_fails_beside_a_truncated_one(tmp_path: Path) -> None:
    folder = tmp_path / "ci"
    folder.mkdir()
    shutil.copy(GREEN_JUNIT, folder / GREEN_JUNIT.name)
    high = CORPUS / "sarif/tool-goldens/grype_TestSarifPresenter_image.golden"  # two findings of severity 8.2 and 8.5
    shutil.copy(high, folder / "grype.sarif")
    _truncate(high, folder / "codeql.sarif")
    code, out, _ = _run(folder)
    data = json.loads(out)
    by_id = {f["rule_id"]: f for f in data["findings"]}
    assert data["evidence"]["security"]["availability"] == "incomplete"
    # more evidence can only add findings: a failure seen in the readable part stands, a pass does not
    assert by_id["GNG-SEC-002"]["status"] == "failed" and "incomplete" in by_id["GNG-SEC-002"]["message"]
    assert by_id["GNG-SEC-001"]["status"] == "unknown" and "codeql.sarif" in by_id["GNG-SEC-001"]["message"]
    assert code == 3 and data["decision"] == "escalate"


def test_critical_findings_in_the_readable_sarif_reject_beside_a_truncated_one(tmp_path: Path) -> None:
    folder = tmp_path / "ci"
    folder.mkdir()
    shutil.copy(GREEN_JUNIT, folder / GREEN_JUNIT.name)
    policy = tmp_path / "gonogo.yml"
    shutil.copy(CORPUS / "sarif/tool-goldens/grype_TestSarifPresenter_image.golden", folder / "grype.sarif")
    _truncate(CORPUS / "sarif/tool-goldens/grype_TestSarifPresenter_directory.golden", folder / "codeql.sarif")
    policy.write_text("environments:\n  production:\n    rules: {GNG-SEC-002: {severity: blocker}}\n")
    result = CliRunner().invoke(assess, ["--artifacts", str(folder), "--format", "json", "--now", NOW, "--policy", str(policy)])
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and data["decision"] == "no-go" and "GNG-SEC-002" in data["blocking"]


def test_only_truncated_reports_make_the_part_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "ci"
    folder.mkdir()
    _truncate(CORPUS / "junit/enricomi/junit-xml/pytest/junit.fail.xml", folder / "TEST-a.xml", b"<failure")
    code, out, _ = _run(folder)
    data = json.loads(out)
    assert data["evidence"]["tests"]["availability"] == "unavailable"
    assert [r["path"] for r in data["refused"]] == ["TEST-a.xml"]
    assert code == 3


def test_parse_artifacts_lists_refused_files_on_the_part() -> None:
    good = GREEN_JUNIT.read_bytes()
    bad = (CORPUS / "junit/enricomi/junit-xml/pytest/junit.fail.xml").read_bytes()
    cut = bad[: bad.index(b"<failure") + 8]
    results = parse_artifacts([ArtifactFile.from_bytes("a/TEST-good.xml", good),
                               ArtifactFile.from_bytes("b/TEST-cut.xml", cut)])  # fmt: skip
    tests = results.tests
    assert tests.availability is Availability.INCOMPLETE and not tests.ok and tests.has_data
    assert [(r.path, r.kind) for r in tests.refused] == [("b/TEST-cut.xml", "junit")]
    assert "b/TEST-cut.xml" in tests.reason
    assert tests.total > 0  # what was read is kept, as a lower bound
    assert results.coverage.availability is Availability.NOT_CONFIGURED and not results.coverage.refused


def test_an_archive_that_cannot_be_opened_makes_every_artifact_part_incomplete() -> None:
    results = parse_artifacts([
        ArtifactFile.from_bytes("TEST-good.xml", GREEN_JUNIT.read_bytes()),
        ArtifactFile(name="reports.zip", size=0, rejected="reports.zip: could not be downloaded: 502"),
    ])  # fmt: skip
    assert results.tests.availability is Availability.INCOMPLETE
    for part in (results.coverage, results.security, results.performance):
        assert part.availability is Availability.UNAVAILABLE and [r.path for r in part.refused] == ["reports.zip"]


# --- the app: workflow-run artifacts through the sandbox -------------------------------------------


def test_app_never_approves_with_a_truncated_report_in_a_workflow_artifact(database_url: str) -> None:
    from tests.scenarios import decide, perf_state, sarif, stored, zipped
    from tests.world import running_world

    state = perf_state()  # v1.1 alone is approved with its clean artifacts (see test_policy_e2e)
    _, v11 = state.deployment("v1.1")
    nightly = state.add_workflow_run("acme/api", v11.sha, name="Nightly", status="completed", conclusion="success")
    failing = (CORPUS / "junit/enricomi/junit-xml/pytest/junit.fail.xml").read_bytes()
    good_sarif = sarif([])
    critical_sarif = sarif([{"ruleId": "js/sql-injection", "path": "web/db.js", "line": 3, "cvss": "9.8"}])
    state.add_artifact("acme/api", nightly.id, "nightly-results", zipped({
        "TEST-integration.xml": failing[: failing.index(b"<failure") + 8],
        "scans/clean.sarif": good_sarif.encode(),
        "scans/codeql.sarif": critical_sarif.encode()[: len(critical_sarif) // 2],
        "report.html": b"<!DOCTYPE html><html><body>nightly</body></html>",
    }))  # fmt: skip
    with running_world(database_url, state) as world:
        gate = decide(world, "v1.1")
        ev, decision, _ = stored(world, "v1.1")
        summary = world.check_run("v1.1").output["summary"]
    assert gate.answer != "approved" and decision["verdict"] != "go"
    assert ev.tests.availability is Availability.INCOMPLETE
    assert [r.path for r in ev.tests.refused] == ["nightly-results:TEST-integration.xml"]
    assert ev.security.availability is Availability.INCOMPLETE
    assert [r.path for r in ev.security.refused] == ["nightly-results:scans/codeql.sarif"]
    assert [f.path for f in ev.not_understood] == ["nightly-results:report.html"]
    test001 = next(f for f in decision["findings"] if f["rule_id"] == "GNG-TEST-001")
    assert test001["status"] == "unknown" and "TEST-integration.xml" in test001["message"]
    assert "nightly-results:TEST-integration.xml" in summary and "nightly-results:scans/codeql.sarif" in summary
    assert "Files not understood (1)" in summary and "nightly-results:report.html" in summary


def test_app_never_approves_when_an_artifact_cannot_be_downloaded(database_url: str) -> None:
    from tests.scenarios import decide, junit, perf_state, stored, zipped
    from tests.world import running_world

    state = perf_state()  # v1.1 alone is approved with its clean artifacts (see test_policy_e2e)
    _, v11 = state.deployment("v1.1")
    nightly = state.add_workflow_run("acme/api", v11.sha, name="Nightly", status="completed", conclusion="success")
    art = state.add_artifact("acme/api", nightly.id, "nightly-results", zipped({"TEST-nightly.xml": junit(5)}))
    with running_world(database_url, state) as world:
        world.state.inject("GET", f"/repos/acme/api/actions/artifacts/{art.id}/zip", "status", status=500, times=None)
        gate = decide(world, "v1.1")
        ev, decision, _ = stored(world, "v1.1")
    assert gate.answer != "approved" and decision["verdict"] != "go"
    # the clean artifacts were read; the one that could not be fetched might have held any kind of report
    for part in (ev.tests, ev.coverage, ev.performance):
        assert part.availability is Availability.INCOMPLETE, (part.availability, part.reason)
        assert [(r.path, r.kind) for r in part.refused] == [("nightly-results", "unknown")]
        assert "could not be downloaded" in part.refused[0].reason
    assert any("nightly-results" in r for r in decision["reasons"])
