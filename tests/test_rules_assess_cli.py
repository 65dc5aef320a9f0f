"""`gonogo assess` on folders built from the vendored corpus: exit codes, formats, same decision as the pipeline."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from github_app.commands.assess import assess
from rules.pipeline import OFFLINE_SCOPE, evaluate, evidence_from_artifacts
from rules.policy import default_policy
from scorer.parsers import iter_dir_files, parse_artifacts

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus" / "artifacts"
PYTEST_JUNIT = CORPUS / "junit" / "enricomi" / "junit-xml" / "pytest"
NOW = "2025-06-04T10:00:00+00:00"


@pytest.fixture(autouse=True)
def _corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CORPUS.is_dir(), f"the vendored fixtures are missing at {CORPUS}"
    monkeypatch.chdir(tmp_path)  # no .github/gonogo.yml is picked up from the checkout


def _folder(tmp_path: Path, name: str, *files: Path) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(assess, [*args, "--now", NOW])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def green(tmp_path: Path) -> Path:
    return _folder(tmp_path, "green", PYTEST_JUNIT / "junit.gloo.standalone.xml",
                   CORPUS / "sarif" / "tool-goldens" / "trivy_alpine-310.sarif.golden")  # fmt: skip


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    return _folder(tmp_path, "failing", PYTEST_JUNIT / "junit.fail.xml")


def test_green_folder_goes_with_exit_0_and_full_json(green: Path) -> None:
    code, out, _ = _run("--artifacts", str(green), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["decision"] == "go"
    assert {"decision", "readiness_score", "risk", "confidence", "dimensions", "findings", "blocking",
            "recommendations", "strategy", "evidence"} <= set(data)  # fmt: skip
    assert data["dimensions"]["quality"]["score"] is not None
    assert set(data["strategy"]) >= {"name", "reason"}
    assert data["evidence"]["tests"]["availability"] == "ok"
    finding = next(f for f in data["findings"] if f["rule_id"] == "GNG-TEST-001")
    assert finding == {**finding, "dimension": "quality", "severity": "blocker", "status": "passed", "value": 0}


def test_failing_tests_are_no_go_with_exit_1(failing: Path) -> None:
    code, out, _ = _run("--artifacts", str(failing), "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["decision"] == "no-go" and data["blocking"] == ["GNG-TEST-001"]
    failing_tests = data["evidence"]["tests"]["failures"]
    assert failing_tests and failing_tests[0]["file"] == "test/test_spark.py"


def test_unreadable_reports_escalate_with_exit_3(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "corrupt", PYTEST_JUNIT / "corrupt-xml.xml")
    code, out, err = _run("--artifacts", str(folder))
    assert code == 3 and "ESCALATE" in out.splitlines()[0]
    assert "not well-formed" in err


def test_markdown_format_is_the_check_run_report(failing: Path) -> None:
    code, out, _ = _run("--artifacts", str(failing), "--format", "markdown")
    assert code == 1 and out.startswith("## ⛔ NO-GO") and "### Blocking findings" in out


def test_dry_run_policy_approves_with_exit_0(failing: Path, tmp_path: Path) -> None:
    policy = tmp_path / "gonogo.yml"
    policy.write_text("mode: dry-run\n")
    code, out, _ = _run("--artifacts", str(failing), "--policy", str(policy), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["decision"] == "no-go" and data["action"] == "approve"


def test_policy_overrides_apply(failing: Path, tmp_path: Path) -> None:
    policy = tmp_path / "gonogo.yml"
    policy.write_text("environments:\n  staging:\n    rules: {GNG-TEST-001: {threshold: 1}}\n")
    code, out, _ = _run("--artifacts", str(failing), "--policy", str(policy), "--environment", "staging", "--format", "json")
    assert json.loads(out)["blocking"] == [] and code in (0, 3)


def test_invalid_policy_is_bad_input_with_positions(failing: Path, tmp_path: Path) -> None:
    policy = tmp_path / "gonogo.yml"
    policy.write_text("mode: enforce\nenvironments:\n  production:\n    aprove: {}\n")
    code, _, err = _run("--artifacts", str(failing), "--policy", str(policy))
    assert code == 2 and f"{policy}:4:5: environments.production.aprove: unknown key" in err


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert _run("--artifacts", str(tmp_path / "missing"))[0] == 2
    assert _run()[0] == 2
    assert _run("--artifacts", str(tmp_path), "--format", "yaml")[0] == 2


def test_cli_and_pipeline_give_the_same_decision(failing: Path) -> None:
    _, out, _ = _run("--artifacts", str(failing), "--format", "json")
    when = datetime.fromisoformat(NOW)
    results = parse_artifacts(iter_dir_files(failing))
    evidence = evidence_from_artifacts(results, environment="production", repository="local/repository",
                                       sha="0" * 40, created_at=when)  # fmt: skip
    direct = evaluate(evidence, default_policy(), "production", when, scope=OFFLINE_SCOPE).summary_dict()
    cli = json.loads(out)
    cli.pop("problems")
    assert (cli.pop("refused"), cli.pop("not_understood"), cli.pop("not_understood_total")) == ([], [], 0)
    assert cli == json.loads(json.dumps(direct, default=str))
