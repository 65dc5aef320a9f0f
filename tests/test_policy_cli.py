"""`gonogo policy schema | validate | explain` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from github_app.commands.policy import policy


def test_schema_prints_json_schema() -> None:
    result = CliRunner().invoke(policy, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert set(schema["properties"]) == {"extends", "mode", "artifacts", "migrations", "environments"}


def test_validate_reports_every_error_with_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "gonogo.yml"
    f.write_text("mode: nope\nenvironments:\n  production:\n    approve: {max_risk: 7}\n    colour: red\n")
    result = CliRunner().invoke(policy, ["validate", str(f)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{f}:1:7: mode:" in lines[0]
    assert any(f"{f}:4:25: environments.production.approve.max_risk" in ln for ln in lines)
    assert any(f"{f}:5:5: environments.production.colour: unknown key 'colour'" in ln for ln in lines)
    assert "3 error(s)" in lines[-1]


def test_validate_accepts_a_valid_file(tmp_path: Path) -> None:
    f = tmp_path / "gonogo.yml"
    f.write_text("extends: strict\nmode: dry-run\n")
    result = CliRunner().invoke(policy, ["validate", str(f)])
    assert result.exit_code == 0 and "valid" in result.output


def test_validate_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert CliRunner().invoke(policy, ["validate", str(tmp_path / "nope.yml")]).exit_code == 2


def test_explain_prints_the_effective_policy(tmp_path: Path) -> None:
    f = tmp_path / "gonogo.yml"
    f.write_text("environments:\n  production:\n    reviewers: {users: [alice], remind_after: 2h}\n")
    result = CliRunner().invoke(policy, ["explain", "--environment", "production", str(f)])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["approve"]["max_risk"] == 0.15 and data["reviewers"]["users"] == ["alice"]
    assert data["reviewers"]["remind_after"] == "2h" and data["sources"] == ["pack:default", str(f)]


def test_explain_without_file_uses_the_default_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .github/gonogo.yml here
    result = CliRunner().invoke(policy, ["explain", "-e", "staging", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["approve"]["min_score"] == 70


def test_a_yes_or_true_where_a_number_belongs_is_an_error_not_1(tmp_path: Path) -> None:
    # YAML 1.1 reads yes/on/true as a boolean; taken as the number 1 they would approve any risk
    f = tmp_path / "gonogo.yml"
    f.write_text("environments:\n  production:\n    approve: {max_risk: yes, min_score: true}\n"
                 "    reject: {max_risk: on}\n    rules:\n      GNG-TEST-005: {threshold: true}\n"
                 "    learning: {min_deployments: true}\n")  # fmt: skip
    result = CliRunner().invoke(policy, ["validate", str(f)])
    assert result.exit_code == 1, result.output
    for where in ("3:25: environments.production.approve.max_risk", "3:41: environments.production.approve.min_score",
                  "4:24: environments.production.reject.max_risk",
                  "6:33: environments.production.rules.GNG-TEST-005.threshold",
                  "7:33: environments.production.learning.min_deployments"):  # fmt: skip
        assert any(f"{f}:{where}: a number is needed, not a yes/no" in line for line in result.output.splitlines()), where


def test_a_policy_github_would_not_send_is_invalid_here_too(tmp_path: Path) -> None:
    # the app reads the policy through GitHub's contents API, which sends files up to 1 MB; a larger one makes
    # gonogo escalate every deployment, so validating it must not say "valid" (after minutes of parsing)
    f = tmp_path / "gonogo.yml"
    f.write_text("extends: default\n" + "# padding\n" * 100_001)
    result = CliRunner().invoke(policy, ["validate", str(f)])
    assert result.exit_code == 1 and "valid\n" not in result.stdout
    assert "over 1 MB" in result.output and "keep the policy under 1 MB" in result.output
    explained = CliRunner().invoke(policy, ["explain", "-e", "production", str(f)])
    assert explained.exit_code == 1 and "over 1 MB" in explained.output
    from github_app.commands.assess import assess

    (tmp_path / "reports").mkdir()
    assessed = CliRunner().invoke(assess, ["--artifacts", str(tmp_path / "reports"), "--policy", str(f)])
    assert assessed.exit_code == 2 and "over 1 MB" in assessed.output
