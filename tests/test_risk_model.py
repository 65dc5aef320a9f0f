"""RiskModel robustness, exact explanations, serialisation, blending and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from sklearn.metrics import roc_auc_score

from scorer.risk.artifact import TrainedRiskModel, labelled_training_set, load_prior, train_model
from scorer.risk.blend import BlendedRiskModel
from scorer.risk.explain import explain, risk_estimate
from scorer.risk.features import build_features
from scorer.risk.metrics import DECISION_LINE, evaluate, is_at_least_as_good, net_benefit, plot_evaluation
from scorer.risk.model import RiskModel
from tests.simulate_history import simulate_history


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedRiskModel, pd.DataFrame, pd.DataFrame]:
    history, _ = simulate_history(4000, seed=5)
    return train_model(history, random_state=0), history, build_features(history)


def test_twenty_rows_fit_a_regularised_logistic_model() -> None:
    history, _ = simulate_history(20, seed=6)
    X, y, _ = labelled_training_set(history)
    model = RiskModel(random_state=0).fit(X, y)
    p = model.predict_risk(X)
    assert model.kind_ == "logistic"
    assert np.all((p > 0) & (p < 1))
    # Strong regularisation keeps 20 rows from producing confident predictions.
    assert np.ptp(p) < 0.6


def test_one_class_only_gives_a_smoothed_base_rate_with_a_reason() -> None:
    history, _ = simulate_history(60, seed=7)
    history["outcome"] = "success"
    X, y, _ = labelled_training_set(history)
    model = RiskModel().fit(X, y)
    assert model.kind_ == "base_rate"
    assert "only one outcome" in (model.fallback_reason_ or "")
    assert model.predict_risk(X) == pytest.approx(np.full(60, 0.5 / 61))
    assert explain(model, X.iloc[0]) == []


def test_all_missing_and_constant_columns_do_not_break_training() -> None:
    history, _ = simulate_history(1500, seed=8)
    history["coverage"] = np.nan
    history["coverage_delta"] = np.nan
    history["tests_total"] = 7.0
    X, y, _ = labelled_training_set(history)
    model = RiskModel(random_state=0).fit(X, y)
    p = model.predict_risk(X)
    assert np.isfinite(p).all() and model.kind_ in {"boosting", "logistic", "ensemble"}
    credits, base, z = model.contributions(X.iloc[:50])
    assert np.abs(credits[:, list(X.columns).index("coverage")]).max() == 0.0
    assert credits.sum(axis=1) + base == pytest.approx(z)


def test_unknown_environment_is_scored_from_its_change_alone(trained) -> None:
    model, history, _ = trained
    new = history.tail(1).copy()
    new["environment"] = "never-seen-before"
    new["deployment_id"] = "new"
    new["created_at"] = history["created_at"].max() + pd.Timedelta(hours=1)
    new["outcome"] = None
    features = build_features(pd.concat([history, new], ignore_index=True)).tail(1)
    assert np.isnan(features["env_recent_failure_rate"].iloc[0])
    p = model.predict_risk(features)[0]
    assert 0.0 < p < 1.0
    drivers = explain(model, features.iloc[0])
    assert any("no earlier outcomes in this environment" in d.text for d in drivers)


def test_explanation_adds_up_to_the_log_odds_against_the_base(trained) -> None:
    model, _, features = trained
    est = model.estimator
    assert isinstance(est, RiskModel)
    credits, base, z = est.contributions(features.iloc[:300])
    assert credits.sum(axis=1) + base == pytest.approx(z, abs=1e-9)
    assert z == pytest.approx(logit(model.predict_risk(features.iloc[:300])), abs=1e-6)
    row = features.iloc[123]
    drivers = explain(model, row)
    estimate = risk_estimate(model, row)
    assert sum(d.contribution for d in drivers) == pytest.approx(
        logit(estimate.probability) - logit(estimate.base_rate), abs=1e-9)
    assert estimate.model_version == model.version
    assert abs(drivers[0].contribution) >= abs(drivers[-1].contribution)


def test_plain_words_name_the_size_against_the_repository_median() -> None:
    history = pd.DataFrame({
        "deployment_id": [f"d{i}" for i in range(41)], "repository": "r", "environment": "prod",
        "created_at": pd.date_range("2024-01-01", periods=41, freq="h", tz="UTC"),
        "additions": [400] * 40 + [4000], "deletions": [57] * 40 + [120], "files_changed": 3,
        "outcome": (["success"] * 9 + ["failure"]) * 4 + [None],
    })
    features = build_features(history)
    model = RiskModel().fit(features.iloc[:40], (history["outcome"].iloc[:40] == "failure").astype(int))
    texts = [d.text for d in explain(model, features.iloc[40])]
    assert any(t.startswith("4,120 lines changed, 9x this repository's median: ") for t in texts), texts


def test_tree_credits_are_exact_for_the_boosted_model() -> None:
    history, _ = simulate_history(3000, seed=9)
    X, y, _ = labelled_training_set(history)
    model = RiskModel(random_state=0, calibration="isotonic").fit(X, y)
    assert model.calibration_ == "isotonic"
    credits, base, z = model.contributions(X.iloc[-200:])
    assert credits.sum(axis=1) + base == pytest.approx(z, abs=1e-9)


def test_random_state_makes_training_reproducible() -> None:
    history, _ = simulate_history(2000, seed=10)
    X, y, _ = labelled_training_set(history)
    a = RiskModel(random_state=3).fit(X, y).predict_risk(X)
    b = RiskModel(random_state=3).fit(X, y).predict_risk(X)
    assert np.array_equal(a, b)


def test_serialisation_round_trips_with_metadata(trained) -> None:
    model, history, features = trained
    blob = model.to_bytes()
    loaded = TrainedRiskModel.from_bytes(blob)
    assert loaded.metadata == model.metadata
    assert np.array_equal(loaded.predict_risk(features), model.predict_risk(features))
    meta = loaded.metadata
    assert meta["training_window"]["min_created_at"] == history["created_at"].min().isoformat()
    assert meta["training_window"]["max_created_at"] == history["created_at"].max().isoformat()
    assert "churn_log" in meta["features"] and meta["libraries"]["scikit-learn"]
    assert set(meta["metrics"]) >= {"roc_auc", "brier", "ece", "catch_rate"}
    with pytest.raises(ValueError, match="not a gonogo risk model"):
        TrainedRiskModel.from_bytes(b"garbage")


def test_prior_is_packaged_and_blends_towards_the_repository() -> None:
    prior = load_prior()
    assert prior is not None, "scorer/risk/prior/prior.bin is missing: run python -m scorer.risk.build_prior"
    assert prior.metadata["source"]["licence"] == "MIT"
    history, _ = simulate_history(300, seed=11)
    few = train_model(history.head(30), prior=prior)
    many = train_model(history, prior=prior)
    assert isinstance(few.estimator, BlendedRiskModel) and isinstance(many.estimator, BlendedRiskModel)
    assert few.estimator.weight == pytest.approx(30 / 130)
    assert many.estimator.weight == pytest.approx(300 / 400)
    features = build_features(history)
    credits, base, z = many.estimator.contributions(features.iloc[:20])
    assert credits.sum(axis=1) + base == pytest.approx(z, abs=1e-9)
    # Without any outcome the prior alone answers, re-centred on nothing but its own base rate.
    cold = BlendedRiskModel(prior.estimator, None, n_outcomes=0, n_failures=0)
    p = cold.predict_risk(features.iloc[:20])
    assert np.all((p > 0) & (p < 1)) and np.ptp(p) > 0


def test_evaluate_reports_the_documented_fields(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    m = evaluate(y, p)
    assert m["n"] == 2000 and m["roc_auc"] > 0.7 and m["ece"] < 0.05
    assert set(m["catch_rate"]) == {"0.05", "0.1", "0.2", "0.5"}
    assert m["catch_rate"]["0.5"] > m["catch_rate"]["0.05"]
    assert evaluate([1, 0, 0, 1], [0.9, 0.1, 0.2, 0.8])["roc_auc"] == 1.0
    png = plot_evaluation(y, p, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_challenger_must_be_at_least_as_good() -> None:
    champion = {"roc_auc": 0.80, "brier": 0.10, "ece": 0.02}
    assert is_at_least_as_good({"roc_auc": 0.80, "brier": 0.10, "ece": 0.02}, champion)
    assert is_at_least_as_good({"roc_auc": 0.797, "brier": 0.101, "ece": 0.025}, champion)
    assert not is_at_least_as_good({"roc_auc": 0.78, "brier": 0.10, "ece": 0.02}, champion)
    assert not is_at_least_as_good({"roc_auc": 0.81, "brier": 0.12, "ece": 0.02}, champion)
    assert is_at_least_as_good({"roc_auc": 0.6}, {"roc_auc": None})
    # ranking and calibration as good, but it holds back good releases at the gate's line for nothing
    assert not is_at_least_as_good({"roc_auc": 0.80, "brier": 0.10, "ece": 0.02, "net_benefit": 0.0049},
                                   {**champion, "net_benefit": 0.005})  # fmt: skip
    assert is_at_least_as_good({"roc_auc": 0.80, "brier": 0.10, "ece": 0.02, "net_benefit": 0.005},
                               {**champion, "net_benefit": 0.005})  # fmt: skip
    assert is_at_least_as_good({"roc_auc": 0.80, "brier": 0.10, "ece": 0.02, "net_benefit": 0.004}, champion)


def test_net_benefit_counts_failures_held_back_less_good_releases_held_back_at_the_odds_of_the_line() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    # holds back one failure and two good releases at 15 %: 1/10 - 2/10 * 0.15/0.85
    p = np.array([0.4, 0.1, 0.3, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    assert net_benefit(y, p) == pytest.approx(0.1 - 0.2 * 0.15 / 0.85)
    assert net_benefit(y, np.zeros(10)) == 0.0  # approving everything
    assert net_benefit(y, y) == pytest.approx(0.2)  # holding back exactly the failures: the failure rate
    assert evaluate(y, p)["net_benefit"] == pytest.approx(net_benefit(y, p))
    assert net_benefit(y, p, line=0.35) == pytest.approx(0.1)  # only the 40 % one is over a 35 % line


def test_the_registry_line_is_the_default_production_approve_limit() -> None:
    from rules.policy import default_policy, effective

    assert effective(default_policy(), "production").approve.max_risk == DECISION_LINE


def test_form_and_calibration_are_chosen_without_the_rows_that_are_reported() -> None:
    """Nested time splits: relabelling the latest rows changes the reported figures, never the choice."""
    history, _ = simulate_history(3000, seed=8)
    X, y, _ = labelled_training_set(history)
    cut = round(len(y) * 0.8)
    flipped = y.copy()
    flipped[cut:] = 1 - flipped[cut:]  # the outer rows now say the opposite
    a = RiskModel(random_state=0).fit(X, y)
    b = RiskModel(random_state=0).fit(X, flipped)
    assert a.validation_metrics_["selection"] == "nested"
    assert (a.kind_, a.calibration_, a.candidate_auc_) == (b.kind_, b.calibration_, b.candidate_auc_)
    assert a.validation_metrics_["roc_auc"] > 0.6 > b.validation_metrics_["roc_auc"]
    assert a.validation_metrics_["n"] == len(y) - cut


def test_a_drifting_history_is_learnt_mostly_from_its_latest_rows() -> None:
    """When a risk factor turns around, the inner split picks the fit that weighs recent rows more."""
    rng = np.random.default_rng(3)
    n = 12_000
    x = rng.normal(size=(n, 3))
    slope = np.where(np.arange(n) < 3000, 1.5, -1.5)  # what made a change risky stopped doing so
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + slope * x[:, 0] + 0.5 * x[:, 1])))).astype(int)
    weighted = RiskModel(random_state=0, recency_half_life=2000).fit(x[:10_000], y[:10_000])
    flat = RiskModel(random_state=0, recency_half_life=None).fit(x[:10_000], y[:10_000])
    assert weighted.recency_ == 2000 and flat.recency_ is None
    assert weighted.candidate_auc_["ensemble+recent"] > weighted.candidate_auc_["ensemble"]
    later = roc_auc_score(y[10_000:], weighted.predict_risk(x[10_000:]))
    assert later > roc_auc_score(y[10_000:], flat.predict_risk(x[10_000:])) + 0.01
