"""`gonogo model train / evaluate / explain` on history files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from github_app.cli import cli
from tests.simulate_history import simulate_history


def _history(tmp_path: Path, n: int = 1500) -> Path:
    history, _ = simulate_history(n, seed=12)
    path = tmp_path / "history.parquet"
    history.to_parquet(path)
    return path


def test_train_evaluate_explain_round_trip(tmp_path: Path) -> None:
    history = _history(tmp_path)
    model = tmp_path / "model.bin"
    runner = CliRunner()
    trained = runner.invoke(cli, ["model", "train", "--history", str(history), "--output", str(model)])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout[trained.stdout.index("{"):])
    assert summary["rows"] == 1500 and summary["blend"]["weight"] == 1500 / 1600

    plot = tmp_path / "plot.png"
    evaluated = runner.invoke(cli, ["model", "evaluate", "--model", str(model), "--history", str(history),
                                    "--format", "json", "--plot", str(plot)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert {"n", "positive_rate", "roc_auc", "pr_auc", "brier", "ece", "catch_rate"} <= set(metrics)
    assert metrics["n"] == 1500 and plot.read_bytes()[:4] == b"\x89PNG"

    explained = runner.invoke(cli, ["model", "explain", "--model", str(model), "--history", str(history),
                                    "--row", "d1400"])
    assert explained.exit_code == 0, explained.output
    assert explained.stdout.startswith("deployment d1400: risk ")
    as_json = runner.invoke(cli, ["model", "explain", "--model", str(model), "--history", str(history),
                                  "--row", "d1400", "--format", "json"])
    from scorer.risk.artifact import TrainedRiskModel
    from scorer.risk.explain import risk_estimate
    from scorer.risk.features import build_features
    from scorer.risk.history import load_history

    full = load_history(history)
    whole_file = risk_estimate(TrainedRiskModel.from_bytes(model.read_bytes()),
                               build_features(full).iloc[1400], top=10)  # features of every row, as before
    assert json.loads(as_json.stdout)["probability"] == pytest.approx(whole_file.probability, abs=1e-12)
    assert any(line.strip().endswith(tuple("0123456789")) and ": " in line for line in explained.stdout.splitlines()[1:])


def test_train_without_output_registers_in_the_database(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GONOGO_DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    result = CliRunner().invoke(cli, ["model", "train", "--history", str(_history(tmp_path, 100)), "--no-prior"])
    assert result.exit_code == 0, result.output
    from sqlalchemy import select

    from github_app import db
    from github_app.db.models import RiskModelRecord

    engine = db.make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    with engine.connect() as conn:
        rows = conn.execute(select(RiskModelRecord.version, RiskModelRecord.active)).all()
    engine.dispose()
    assert len(rows) == 1 and rows[0].active


def test_bad_history_lists_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("deployment_id,repository,environment,created_at,outcome\nx,r,prod,not-a-date,boom\n")
    result = CliRunner().invoke(cli, ["model", "train", "--history", str(bad), "--output", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert "row 2 (deployment_id=x): created_at 'not-a-date' is not an ISO 8601 timestamp" in result.output
    assert "outcome 'boom' must be one of" in result.output


def test_unknown_row_is_a_clear_error(tmp_path: Path) -> None:
    history = _history(tmp_path, 100)
    model = tmp_path / "model.bin"
    runner = CliRunner()
    assert runner.invoke(cli, ["model", "train", "--history", str(history), "--output", str(model)]).exit_code == 0
    result = runner.invoke(cli, ["model", "explain", "--model", str(model), "--history", str(history), "--row", "nope"])
    assert result.exit_code != 0 and "no row with deployment_id 'nope'" in result.output


def test_evaluate_since_scores_later_rows_with_earlier_rows_as_context(tmp_path: Path) -> None:
    """Rows before --since feed the features of the scored rows and are not scored themselves."""
    import numpy as np
    import pandas as pd

    from scorer.risk.artifact import TrainedRiskModel, labelled_training_set
    from scorer.risk.metrics import evaluate

    history, _ = simulate_history(1500, seed=13)
    since = history["created_at"].iloc[1200]
    train_path, full_path, later_path = tmp_path / "train.parquet", tmp_path / "full.parquet", tmp_path / "later.parquet"
    history[history["created_at"] < since].to_parquet(train_path)
    history.to_parquet(full_path)
    history[history["created_at"] >= since].to_parquet(later_path)
    model = tmp_path / "model.bin"
    runner = CliRunner()
    assert runner.invoke(cli, ["model", "train", "--history", str(train_path), "--output", str(model),
                               "--no-prior"]).exit_code == 0
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = runner.invoke(cli, ["model", "evaluate", "--model", str(model), "--history", str(full_path),
                                 "--since", stamp, "--format", "json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 300 and metrics["context_rows"] == 1200 and "warning" not in metrics
    X, y, h = labelled_training_set(history)
    later = (h["created_at"] >= since).to_numpy()
    trained = TrainedRiskModel.from_bytes(model.read_bytes())
    expected = evaluate(y[later], trained.predict_risk(X[later]))
    assert metrics["roc_auc"] == expected["roc_auc"] and metrics["ece"] == expected["ece"]
    # the later rows alone lose their past: their history features (and so the figures) differ
    alone = runner.invoke(cli, ["model", "evaluate", "--model", str(model), "--history", str(later_path),
                                "--format", "json"])
    assert alone.exit_code == 0 and json.loads(alone.stdout)["n"] == 300
    assert json.loads(alone.stdout)["brier"] != metrics["brier"]
    text = runner.invoke(cli, ["model", "evaluate", "--model", str(model), "--history", str(full_path),
                               "--since", stamp])
    assert "since" in text.stdout and "gating the riskiest 10% catches" in text.stdout and "ECE" in text.stdout
    assert metrics["net_benefit"] == expected["net_benefit"]  # what the registry weighs, in both outputs
    assert f"over 15% (the default approve.max_risk): {metrics['net_benefit'] * 1000:+.1f} failures per 1,000" in text.stdout
    late = runner.invoke(cli, ["model", "evaluate", "--model", str(model), "--history", str(full_path),
                               "--since", "2099-01-01"])
    assert late.exit_code != 0 and "pick an earlier --since" in late.output
    assert np.isfinite(pd.Series(metrics["catch_rate"]).astype(float)).all()
