"""`gonogo report`: the API's figures, printed as text, JSON or Markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from github_app import db, insights
from github_app.cli import cli
from tests.insights_data import seed


def _run(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["report", *args, "--database-url", database_url])


def test_report_prints_the_shared_figures_in_three_formats(database_url: str) -> None:
    engine = db.make_engine(database_url)
    seed(engine, deployments=90, days=20)
    expected = insights.report(engine, insights.window_from("30d", None, datetime.now(UTC),
                                                            repository="acme/shop", environment="production"))  # fmt: skip
    engine.dispose()

    as_json = _run(database_url, "--repo", "acme/shop", "-e", "production", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["gate_quality"]["deployments"] == expected.gate.deployments == 15
    assert body["dora"]["change_failure_rate"] == expected.dora.change_failure_rate
    assert body["window"]["repository"] == "acme/shop" and len(body["groups"]) == 1

    text = _run(database_url, "--since", "30d")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("gonogo report: all repositories and environments")
    assert "acme/payments → staging" in text.stdout and "deployments requested" in text.stdout
    overall = text.stdout.split("\n\n")[1]
    assert "deployments requested                90" in overall

    markdown = _run(database_url, "-e", "staging", "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.stdout.splitlines()
    assert lines[0] == "## gonogo report: staging"
    assert lines[4].startswith("| | Overall | acme/payments → staging |") and lines[5].startswith("|---|---|")
    assert any(line.startswith("| change failure rate |") for line in lines)


def test_a_window_that_cannot_be_read_says_how_to_write_one(database_url: str) -> None:
    result = _run(database_url, "--since", "yesterday-ish")
    assert result.exit_code == 2 and "ISO-8601" in result.output and "30d" in result.output
    backwards = _run(database_url, "--since", "2026-03-01", "--until", "2026-02-01")
    assert backwards.exit_code == 2 and "since must be before until" in backwards.output
