"""Exact per-feature attribution for a fitted binary ``HistGradientBoostingClassifier``.

Each tree's output is split along the path the row takes: at every split the change in the
tree's expected value (leaf values weighted by training counts) is credited to the split
feature (path attribution, as in Saabas' method). Per tree the credits telescope from the
root's expected value to the leaf value, so over the ensemble they add up exactly to the raw
log-odds minus the ensemble's expected raw log-odds. The trees are packed into arrays once, so
one row is attributed with a few vectorised steps per depth level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scoring packed trees needs numpy only (`gonogo model explain` never imports scikit-learn)
    from sklearn.ensemble import HistGradientBoostingClassifier


@dataclass(frozen=True)
class PackedTrees:
    """Arrays [tree, node] describing the ensemble, plus the expected value of every node."""

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    expected: np.ndarray
    base: float  # expected raw log-odds: baseline + sum of the roots' expected values
    max_depth: int
    n_features: int

    @classmethod
    def from_estimator(cls, est: HistGradientBoostingClassifier) -> PackedTrees:
        """Pack a fitted binary HistGradientBoostingClassifier (numerical features only)."""
        # sklearn keeps the trees in the private `_predictors`; the record layout (value, count,
        # feature_idx, num_threshold, missing_go_to_left, left, right, is_leaf) is stable since 0.21.
        predictors = [iteration[0] for iteration in est._predictors]
        n_trees = len(predictors)
        width = max((len(p.nodes) for p in predictors), default=1)
        feature = np.zeros((n_trees, width), dtype=np.intp)
        threshold = np.zeros((n_trees, width))
        missing_left = np.zeros((n_trees, width), dtype=bool)
        left = np.zeros((n_trees, width), dtype=np.intp)
        right = np.zeros((n_trees, width), dtype=np.intp)
        is_leaf = np.ones((n_trees, width), dtype=bool)
        expected = np.zeros((n_trees, width))
        max_depth = 0
        for t, pred in enumerate(predictors):
            nodes = pred.nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not supported by the path attribution")
            k = len(nodes)
            feature[t, :k] = nodes["feature_idx"]
            threshold[t, :k] = nodes["num_threshold"]
            missing_left[t, :k] = nodes["missing_go_to_left"].astype(bool)
            left[t, :k] = nodes["left"]
            right[t, :k] = nodes["right"]
            is_leaf[t, :k] = nodes["is_leaf"].astype(bool)
            max_depth = max(max_depth, int(nodes["depth"].max()))
            # Children always come after their parent, so a reverse sweep sees children first.
            exp = nodes["value"].astype(float).copy()
            count = nodes["count"].astype(float)
            for i in range(k - 1, -1, -1):
                if not nodes["is_leaf"][i]:
                    lc, rc = nodes["left"][i], nodes["right"][i]
                    total = count[lc] + count[rc]
                    exp[i] = (count[lc] * exp[lc] + count[rc] * exp[rc]) / total if total else 0.0
            expected[t, :k] = exp
        baseline = float(np.ravel(est._baseline_prediction)[0])
        base = baseline + float(expected[:, 0].sum()) if n_trees else baseline
        return cls(feature, threshold, missing_left, left, right, is_leaf, expected, base, max_depth,
                   int(est.n_features_in_))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Return (n_rows, n_features) credits; row sums equal raw log-odds minus ``base``."""
        n = X.shape[0]
        n_trees = self.feature.shape[0]
        out = np.zeros((n, self.n_features))
        if n_trees == 0:
            return out
        trees = np.arange(n_trees)[None, :]
        node = np.zeros((n, n_trees), dtype=np.intp)
        rows = np.arange(n)[:, None]
        for _ in range(self.max_depth):
            active = ~self.is_leaf[trees, node]
            if not active.any():
                break
            feat = self.feature[trees, node]
            x = X[rows, feat]
            go_left = np.where(np.isnan(x), self.missing_left[trees, node], x <= self.threshold[trees, node])
            child = np.where(go_left, self.left[trees, node], self.right[trees, node])
            child = np.where(active, child, node)
            delta = self.expected[trees, child] - self.expected[trees, node]
            np.add.at(out, (np.broadcast_to(rows, feat.shape), feat), delta)
            node = child
        return out
