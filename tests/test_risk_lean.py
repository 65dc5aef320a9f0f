"""The lean copy of a fitted risk model (numpy only) scores and explains exactly as the model does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scorer.risk.artifact import MAGIC_V1, TrainedRiskModel, load_prior, train_model
from scorer.risk.explain import contributions_for
from scorer.risk.features import build_features
from scorer.risk.lean import read_lean
from scorer.risk.model import RiskModel
from tests.simulate_history import simulate_history


@pytest.mark.parametrize(("rows", "params", "kind", "blend"), [
    (400, {}, "logistic", False),  # few rows: the regularised logistic model
    (3000, {"calibration": "isotonic"}, None, False),  # the chosen form with an isotonic map
    (3000, {"calibration": "sigmoid"}, None, True),  # blended with the packaged prior
])  # fmt: skip
def test_lean_copy_gives_the_same_credits_and_log_odds(rows: int, params: dict[str, str], kind: str | None,
                                                       blend: bool) -> None:
    history, _ = simulate_history(rows, seed=3)
    trained = train_model(history, random_state=0, params=params, prior=load_prior() if blend else None)
    assert ("blend" in trained.metadata) is blend
    if kind is not None:
        assert trained.metadata["kind"] == kind
    blob = trained.to_bytes()
    slim = read_lean(blob)
    assert slim is not None and slim.metadata == trained.metadata
    features = build_features(history).iloc[-300:]
    full = contributions_for(TrainedRiskModel.from_bytes(blob), features)
    lean = contributions_for(slim, features)
    assert lean[3] == full[3]
    np.testing.assert_allclose(lean[0], full[0], atol=1e-9)
    assert lean[1] == pytest.approx(full[1], abs=1e-9)
    np.testing.assert_allclose(lean[2], full[2], atol=1e-9)
    assert np.abs(full[0]).sum() > 0  # the rows are explained by something


def test_lean_copy_of_a_one_class_history_is_the_base_rate() -> None:
    history, _ = simulate_history(200, seed=4)
    history["outcome"] = "success"
    trained = train_model(history, random_state=0)
    assert isinstance(trained.estimator, RiskModel) and trained.estimator.kind_ == "base_rate"
    slim = read_lean(trained.to_bytes())
    assert slim is not None
    features = build_features(history).iloc[-5:]
    np.testing.assert_allclose(contributions_for(slim, features)[2], contributions_for(trained, features)[2])


def test_a_first_format_blob_still_loads_and_has_no_lean_copy() -> None:
    history, _ = simulate_history(300, seed=5)
    trained = train_model(history, random_state=0)
    import json
    import pickle
    import struct

    meta = trained.metadata_json().encode()
    old = MAGIC_V1 + struct.pack(">I", len(meta)) + meta + pickle.dumps(trained.estimator)
    assert read_lean(old) is None
    assert TrainedRiskModel.from_bytes(old).metadata == json.loads(meta)


def test_model_explain_imports_neither_scikit_learn_nor_scipy(tmp_path: Path) -> None:
    history, _ = simulate_history(1500, seed=6)
    path, model = tmp_path / "h.parquet", tmp_path / "m.bin"
    history.to_parquet(path)
    model.write_bytes(train_model(history, random_state=0).to_bytes())
    script = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from github_app.cli import cli
        out = CliRunner().invoke(cli, ["model", "explain", "--model", {str(model)!r}, "--history", {str(path)!r},
                                       "--row", "d1400"])
        assert out.exit_code == 0, out.output
        print(out.stdout.splitlines()[0])
        print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "scipy"}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    first, imported = done.stdout.strip().splitlines()[-2:]
    assert first.startswith("deployment d1400: risk ")
    assert imported == "[]"
