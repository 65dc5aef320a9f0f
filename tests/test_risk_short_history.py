"""Short histories (fewer than ``max_samples_additive`` rows): simpler settings, chosen on the inner split only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scorer.risk.artifact import TrainedRiskModel, labelled_training_set, train_model
from scorer.risk.explain import contributions_for
from scorer.risk.features import build_features
from scorer.risk.lean import read_lean
from scorer.risk.model import (
    LINEAR_SHARES,
    RiskModel,
    _auc_difference_se,
    _EnsembleModel,
    _LinearModel,
    _TreeModel,
)
from tests.simulate_history import simulate_history


def _settings(model: RiskModel) -> tuple[object, ...]:
    return (model.kind_, model.recency_, model.C_, model.max_leaf_nodes_, model.n_iter_, model.linear_share_,
            model.calibration_, model.candidate_auc_)


@pytest.fixture(scope="module")
def short() -> tuple[np.ndarray, np.ndarray]:
    history, _ = simulate_history(3000, seed=11)
    X, y, _ = labelled_training_set(history)
    return X.to_numpy(dtype=float), y


def test_short_history_settings_are_chosen_without_the_rows_that_are_reported(short) -> None:
    """Relabelling the outer rows changes the reported figures, never C, the trees' shape and length or the shares."""
    X, y = short[0][:1000], short[1][:1000]
    cut = round(len(y) * 0.8)
    flipped = y.copy()
    flipped[cut:] = 1 - flipped[cut:]
    a = RiskModel(random_state=0).fit(X, y)
    b = RiskModel(random_state=0).fit(X, flipped)
    assert a.validation_metrics_["selection"] == "nested"
    assert _settings(a) == _settings(b)
    assert a.validation_metrics_["roc_auc"] > 0.6 > b.validation_metrics_["roc_auc"]


def test_short_history_tries_simpler_settings_and_a_longer_one_keeps_the_earlier_fit(short) -> None:
    X, y = short
    small = RiskModel(random_state=0).fit(X[:1000], y[:1000])
    assert small.C_ in (small.C, small.C_small)
    assert small.max_leaf_nodes_ in (small.max_leaf_nodes, small.small_leaf_nodes)
    assert small.linear_share_ in LINEAR_SHARES
    # The simulated risk is mostly additive: the short history picks the additive trees, a lower C and
    # an iteration count read off the staged predictions (not bounded by early stopping's patience).
    assert (small.C_, small.max_leaf_nodes_) == (small.C_small, small.small_leaf_nodes)
    off = RiskModel(random_state=0, max_samples_additive=0).fit(X[:1000], y[:1000])
    assert (off.C_, off.max_leaf_nodes_, off.linear_share_) == (off.C, off.max_leaf_nodes, 0.5)
    later = slice(1000, 3000)
    assert (roc_auc_score(y[later], small.predict_risk(X[later]))
            > roc_auc_score(y[later], off.predict_risk(X[later])) + 0.005)
    # From max_samples_additive rows on, the fit is exactly what it was without the short-history settings.
    longer = RiskModel(random_state=0).fit(X[:1500], y[:1500])
    assert (longer.C_, longer.max_leaf_nodes_, longer.linear_share_) == (longer.C, longer.max_leaf_nodes, 0.5)
    same = RiskModel(random_state=0, max_samples_additive=0).fit(X[:1500], y[:1500])
    np.testing.assert_array_equal(longer.predict_risk(X[1500:]), same.predict_risk(X[1500:]))


def test_the_averaged_form_stays_unless_another_ranks_better_beyond_noise(short) -> None:
    X, y = short[0][:1000], short[1][:1000]
    model = RiskModel(random_state=0).fit(X, y)
    ensembles = [auc for name, auc in model.candidate_auc_.items() if name.startswith("ensemble")]
    if model.kind_ != "ensemble":
        assert model.candidate_auc_[model.kind_ + ("+recent" if model.recency_ else "")] > max(ensembles)
    z = np.linspace(-2, 2, 200)
    labels = (np.arange(200) % 3 == 0).astype(float)
    assert _auc_difference_se(labels, z, z, seed=0) == 0.0
    assert _auc_difference_se(labels, z, -z + 0.1 * np.sin(z * 7), seed=0) > 0.0


def test_an_ensemble_from_before_the_share_was_chosen_averages_equally(short) -> None:
    X, y = short[0][:800], short[1][:800]
    linear = _LinearModel(0.1, None, 0).fit(X, y)
    trees = _TreeModel(RiskModel()._tree_params(0, max_iter=20, early_stopping=False)).fit(X, y)
    old = _EnsembleModel(linear, trees, 0.25)
    del old.__dict__["linear_share"]  # as unpickled from a file written before the share existed
    np.testing.assert_allclose(old.raw(X), 0.5 * linear.raw(X) + 0.5 * trees.raw(X))


def test_lean_copy_scores_an_unequal_share_exactly() -> None:
    history, _ = simulate_history(1000, seed=3)
    trained = train_model(history, random_state=0)
    model = trained.estimator
    assert isinstance(model, RiskModel) and isinstance(model.model_, _EnsembleModel)
    model.model_.linear_share = 0.9  # not one the inner split chooses from: the lean copy must follow it
    blob = trained.to_bytes()
    slim = read_lean(blob)
    assert slim is not None
    features = build_features(history).iloc[-300:]
    full = contributions_for(TrainedRiskModel.from_bytes(blob), features)
    lean = contributions_for(slim, features)
    np.testing.assert_allclose(lean[0], full[0], atol=1e-9)
    assert lean[1] == pytest.approx(full[1], abs=1e-9)
    np.testing.assert_allclose(lean[2], full[2], atol=1e-9)
    half = contributions_for(read_lean(train_model(history, random_state=0).to_bytes()), features)
    assert not np.allclose(half[2], lean[2])  # the share is not ignored
