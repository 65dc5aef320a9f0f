"""On histories with known failure probabilities, the model ranks nearly as well and is calibrated."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from scorer.risk.artifact import labelled_training_set
from scorer.risk.metrics import evaluate
from scorer.risk.model import RiskModel
from tests.simulate_history import simulate_history


def test_auc_close_to_the_truth_and_calibrated() -> None:
    """Train on the first 80 % (time order), test on the rest: AUC within 5 % of the true one, ECE <= 0.05."""
    history, truth = simulate_history(20_000, seed=1)
    X, y, h = labelled_training_set(history)
    p_true = truth[h.index.to_numpy()]
    cut = int(len(y) * 0.8)
    model = RiskModel(random_state=0).fit(X.iloc[:cut], y[:cut])
    p = model.predict_risk(X.iloc[cut:])
    metrics = evaluate(y[cut:], p)
    true_auc = roc_auc_score(y[cut:], p_true[cut:])
    assert metrics["roc_auc"] >= 0.95 * true_auc, (metrics, true_auc)
    assert metrics["ece"] <= 0.05, metrics
    assert np.isfinite(p).all()
