"""The risk model: a calibrated probability that a deployment fails, with exact per-feature credits.

``RiskModel`` is a scikit-learn classifier over the numeric features of ``features.build_features``
(rows in chronological order). It picks its form by a time-ordered validation:

* fewer than ``min_samples_boosting`` rows (or too few of the rarer class): a strongly
  regularised logistic model on standardised, median-imputed features plus missing indicators;
* otherwise nested time splits: the latest ``validation_fraction`` of the rows (the outer split)
  is held out; on the rows before it, gradient-boosted trees and the logistic model are fitted on
  the earliest part and whichever of trees, logistic or their log-odds average ranks best on the
  inner split's latest part wins (each form fitted twice: all rows weighing the same, and recent
  rows weighing more, halved every ``recency_half_life`` rows back; the inner split picks), with
  the calibration map (none, Platt/sigmoid or isotonic)
  chosen there by cross-validated log loss. That pipeline is then scored on the outer rows, which
  no choice saw: those are the validation metrics the registry gates on. The chosen form is refit
  on everything, and calibrated on the outer rows as predicted by a fit that did not see them.
  Below ``max_samples_additive`` rows the inner blocks also choose simpler settings (``C_small``,
  two-leaf trees, the trees' length from staged predictions, the logistic share of the average),
  and the average is kept unless another form ranks better beyond the noise of the comparison;
* one class only: no model can be learnt, so the probability is the smoothed base rate
  (``fallback_reason_`` says why).

Both model forms are additive in log-odds per feature (linear terms, or path credits for trees),
so ``contributions`` is exact: credits plus ``base_log_odds`` equal the predicted log-odds.
"""

from __future__ import annotations

import logging
import warnings
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.special import expit, logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from scorer.risk.lean import mix
from scorer.risk.metrics import evaluate
from scorer.risk.trees import PackedTrees

log = logging.getLogger(__name__)

_EPS = 1e-3  # probabilities are kept in [0.001, 0.999]: no deployment is certain to pass or fail
SMALL_ROWS = 5000  # below this many earlier rows, the form is chosen on forward-chained blocks
INNER_FOLDS = 4
# shares of the logistic model in the averaged form that forward-chained blocks choose between
LINEAR_SHARES = (0.5, 0.25, 0.75)
AUC_BOOTSTRAPS = 100


class _Standardiser:
    """Median imputation, missing indicators and standardisation, with per-column provenance."""

    def fit(self, X: np.ndarray) -> _Standardiser:
        missing = np.isnan(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing column: median is NaN
            med = np.nanmedian(X, axis=0) if X.shape[0] else np.zeros(X.shape[1])
        self.median = np.where(np.isnan(med), 0.0, med)
        self.indicator_of = np.flatnonzero(missing.any(axis=0) & ~missing.all(axis=0))
        Z = self._expand(X)
        self.mean = Z.mean(axis=0)
        std = Z.std(axis=0)
        self.scale = np.where(std > 1e-12, std, 1.0)
        # source[k] = original feature index behind expanded column k (value or its indicator)
        self.source = np.concatenate([np.arange(X.shape[1]), self.indicator_of])
        return self

    def _expand(self, X: np.ndarray) -> np.ndarray:
        missing = np.isnan(X)
        filled = np.where(missing, self.median, X)
        return np.hstack([filled, missing[:, self.indicator_of].astype(float)])

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self._expand(X) - self.mean) / self.scale


class _LinearModel:
    """Regularised logistic regression on standardised features; exact linear credits."""

    def __init__(self, C: float, class_weight: str | None, random_state: int) -> None:
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> _LinearModel:
        self.std = _Standardiser().fit(X)
        self.lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000, tol=1e-3,
                                     random_state=self.random_state)
        self.lr.fit(self.std.transform(X), y, sample_weight=weight)
        self.n_features = X.shape[1]
        return self

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.lr.decision_function(self.std.transform(X))

    @property
    def n_iter(self) -> int:
        return max(1, int(np.max(self.lr.n_iter_)))

    @property
    def base(self) -> float:
        # Standardised columns have mean zero over the training rows, so the intercept is the
        # log-odds of the average training row.
        return float(self.lr.intercept_[0])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        terms = self.std.transform(X) * self.lr.coef_[0]
        out = np.zeros((X.shape[0], self.n_features))
        np.add.at(out.T, self.std.source, terms.T)
        return out


class _TreeModel:
    """Gradient-boosted trees with path credits."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> _TreeModel:
        # An all-missing column carries nothing to split on (and sklearn's binning fails on it).
        self.used = np.flatnonzero(~np.isnan(X).all(axis=0))
        self.n_features = X.shape[1]
        self.est = HistGradientBoostingClassifier(**self.params).fit(X[:, self.used], y, sample_weight=weight)
        self.packed = PackedTrees.from_estimator(self.est)
        return self

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.est.decision_function(X[:, self.used])

    @property
    def n_iter(self) -> int:
        return max(1, int(self.est.n_iter_))

    @property
    def base(self) -> float:
        return self.packed.base

    def contributions(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], self.n_features))
        out[:, self.used] = self.packed.contributions(X[:, self.used])
        return out


class _EnsembleModel:
    """Weighted mean of the logistic and the tree log-odds; credits are the same weighted mean of their credits."""

    linear_share = 0.5  # models pickled before the share was chosen averaged the two equally

    def __init__(self, linear: _LinearModel, trees: _TreeModel, linear_share: float = 0.5) -> None:
        self.linear = linear
        self.trees = trees
        self.linear_share = linear_share

    @property
    def n_iter(self) -> int:
        return self.trees.n_iter

    def raw(self, X: np.ndarray) -> np.ndarray:
        return mix(self.linear.raw(X), self.trees.raw(X), self.linear_share)

    @property
    def base(self) -> float:
        return float(mix(self.linear.base, self.trees.base, self.linear_share))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return mix(self.linear.contributions(X), self.trees.contributions(X), self.linear_share)


class _Calibrator:
    """Monotone map from raw log-odds to calibrated log-odds: identity, Platt or isotonic."""

    def __init__(self, method: str) -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> _Calibrator:
        if self.method == "sigmoid":
            lr = LogisticRegression(C=1e4, max_iter=1000).fit(raw[:, None], y)
            self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        elif self.method == "isotonic":
            self.iso = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip").fit(raw, y)
        return self

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            return self.a * raw + self.b
        if self.method == "isotonic":
            return logit(np.clip(self.iso.predict(raw), _EPS, 1 - _EPS))
        return np.asarray(raw, dtype=float)


def _recency(n: int, half_life: float | None) -> np.ndarray | None:
    """Fitting weights of ``n`` rows in time order: halved every ``half_life`` rows back (None: all equal)."""
    if half_life is None:
        return None
    age = np.arange(n - 1, -1, -1, dtype=float)
    return np.asarray(0.5 ** (age / max(half_life, 1.0)))


def _auc_difference_se(y: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of ROC AUC(a) - ROC AUC(b) on the same rows (resampled together)."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(AUC_BOOTSTRAPS):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    return float(np.std(diffs)) if len(diffs) > 1 else float("inf")


def _log_loss(y: np.ndarray, z: np.ndarray) -> float:
    p = np.clip(expit(z), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class RiskModel(ClassifierMixin, BaseEstimator):
    """Calibrated failure-probability classifier with exact additive explanations.

    Rows passed to ``fit`` must be in chronological order: the latest ``validation_fraction``
    of them choose the model form and the calibration.
    """

    def __init__(
        self,
        *,
        min_samples_boosting: int = 600,
        max_samples_additive: int = 1200,
        min_minority_boosting: int = 20,
        validation_fraction: float = 0.2,
        max_iter: int = 300,
        max_bins: int = 63,
        learning_rate: float = 0.06,
        max_leaf_nodes: int = 15,
        small_leaf_nodes: int = 2,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        C: float = 0.1,
        C_small: float = 0.02,
        class_weight: str | None = None,
        calibration: str = "auto",
        refit: bool = True,
        smoothing: float = 1.0,
        recency_half_life: float | None = 5000.0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.min_samples_boosting = min_samples_boosting
        self.max_samples_additive = max_samples_additive
        self.min_minority_boosting = min_minority_boosting
        self.validation_fraction = validation_fraction
        self.max_iter = max_iter
        self.max_bins = max_bins
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.small_leaf_nodes = small_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.C = C
        self.C_small = C_small
        self.class_weight = class_weight
        self.calibration = calibration
        self.refit = refit
        self.smoothing = smoothing
        self.recency_half_life = recency_half_life
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    # -- fitting -----------------------------------------------------------------------------

    def _tree_params(self, seed: int, max_iter: int | None = None, early_stopping: bool = True,
                     leaves: int | None = None) -> dict[str, Any]:
        return {
            "max_iter": max_iter or self.max_iter,
            "learning_rate": self.learning_rate,
            "max_bins": self.max_bins,
            "max_leaf_nodes": leaves or self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
            "class_weight": self.class_weight,
            "early_stopping": early_stopping,
            "validation_fraction": 0.15,
            "n_iter_no_change": 20,
            "random_state": seed,
        }

    def fit(self, X: Any, y: Any) -> RiskModel:
        """Fit on chronologically ordered rows; return self."""
        if self.calibration not in {"auto", "none", "sigmoid", "isotonic"}:
            raise ValueError(f"calibration={self.calibration!r}: use 'auto', 'none', 'sigmoid' or 'isotonic'")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction!r} must be between 0 and 1")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64,
                             ensure_min_samples=1)
        check_classification_targets(y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        classes = np.unique(y)
        self.fallback_reason_: str | None = None
        self.recency_: float | None = None  # the half-life (rows) the fit weighted recent rows by, if it did
        self.validation_metrics_: dict[str, Any] = {}
        self.n_train_ = len(y)
        if len(classes) == 1:
            self.classes_ = classes
            positives = len(y) if self._is_positive_label(classes[0]) else 0
            self.base_rate_ = (positives + 0.5 * self.smoothing) / (len(y) + self.smoothing)
            self.kind_ = "base_rate"
            self.calibration_ = "none"
            self.n_iter_ = 1
            self.fallback_reason_ = (
                f"only one outcome ({classes[0]!r}) in {len(y)} training rows: no risk factor can be "
                f"learnt, so every deployment gets the smoothed base rate {self.base_rate_:.3f}"
            )
            log.info("risk_model.fallback", extra={"reason": self.fallback_reason_})
            return self
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        self.classes_ = classes
        yb = (y == classes[1]).astype(float)
        self.base_rate_ = float(yb.mean())
        n = len(yb)
        minority = int(min(yb.sum(), n - yb.sum()))
        cut = round(n * (1.0 - self.validation_fraction))
        y_tr, y_va = yb[:cut], yb[cut:]
        can_validate = (
            n >= self.min_samples_boosting
            and minority >= self.min_minority_boosting
            and 0 < y_tr.sum() < len(y_tr)
            and 0 < y_va.sum() < len(y_va)
        )
        if not can_validate:
            self.kind_ = "logistic"
            self.calibration_ = "none"
            # Few rows: regularise hard so a handful of outcomes cannot produce confident predictions.
            self.C_ = self.C_small if n < self.min_samples_boosting else self.C
            self.model_: _LinearModel | _TreeModel | _EnsembleModel = _LinearModel(
                self.C_, self.class_weight, seed).fit(X, yb)
            self.calibrator_ = _Calibrator("none")
            self.n_iter_ = self.model_.n_iter
            return self

        # Nested time splits: the model form and the calibration are chosen on an inner split of the
        # earlier rows ([0, inner) fits, [inner, cut) chooses); the latest rows [cut, n) are only
        # ever used to report and gate, so the reported figures are not flattered by the choice.
        # Few rows make one inner split a noisy judge, so below ``SMALL_ROWS`` the choice is made on the
        # later half of the earlier rows, in consecutive blocks, each predicted by candidates fitted
        # on every row before it (forward chaining): more out-of-time predictions to choose from.
        folds = 1 if cut >= SMALL_ROWS else INNER_FOLDS
        inner = round(cut * (1.0 - (self.validation_fraction if folds == 1 else 0.5)))
        y_pick = yb[inner:cut]
        nested = (
            min(int(y_pick.sum()), len(y_pick) - int(y_pick.sum())) >= 5
            and 0 < yb[:inner].sum() < inner
        )
        # Each form is also tried with recent rows weighing more (``recency_half_life``): a history whose
        # risk factors drift is better learnt from its latest rows; the inner split says whether this one does.
        half_lives: tuple[float | None, ...] = (None,) if self.recency_half_life is None else (
            None, float(self.recency_half_life))
        # A short history (under ``max_samples_additive`` rows) also tries simpler settings (see ``_inner_candidates``).
        small = folds > 1 and n < self.max_samples_additive
        # Settings of the chosen form, per half-life: (C, tree leaves, trees' iterations, logistic share).
        settings: dict[float | None, tuple[float, int, int, float]] = {}
        if nested:
            edges = np.linspace(inner, cut, folds + 1).round().astype(int).tolist()
            raw_pick, settings = self._inner_candidates(X, yb, edges, half_lives, seed, small=small)
        else:  # too few of a class to choose on an inner split: choose on the outer one (unweighted)
            y_pick = y_va
            linear = _LinearModel(self.C, self.class_weight, seed).fit(X[:cut], y_tr)
            trees = _TreeModel(self._tree_params(seed)).fit(X[:cut], y_tr)
            settings[None] = (self.C, self.max_leaf_nodes, trees.n_iter, 0.5)
            outer_candidates: dict[str, _LinearModel | _TreeModel | _EnsembleModel] = {
                "logistic": linear, "boosting": trees, "ensemble": _EnsembleModel(linear, trees)}
            raw_pick = {(name, None): m.raw(X[cut:]) for name, m in outer_candidates.items()}
        aucs = {key: float(roc_auc_score(y_pick, r)) for key, r in raw_pick.items()}
        simplicity = {"logistic": 2, "boosting": 1, "ensemble": 0}  # tie-break: the simpler form, unweighted
        best = max(aucs, key=lambda k: (round(aucs[k], 4), simplicity[k[0]], k[1] is None))
        if nested and small and best[0] != "ensemble":
            # A few hundred rows rank the forms noisily: the average of the two stays unless the other
            # form ranks better by more than the noise of that comparison (a bootstrap standard error).
            averaged = max((k for k in aucs if k[0] == "ensemble"), key=lambda k: (round(aucs[k], 4), k[1] is None))
            noise = _auc_difference_se(y_pick, raw_pick[best], raw_pick[averaged], seed)
            if aucs[best] - aucs[averaged] <= noise:
                best = averaged
        kind, self.recency_ = best
        self.kind_ = kind
        self.candidate_auc_ = {name + ("" if hl is None else "+recent"): auc for (name, hl), auc in aucs.items()}
        self.C_, self.max_leaf_nodes_, n_iter, self.linear_share_ = settings[self.recency_]
        method, oof = self._choose_calibration(raw_pick[best], y_pick, seed)
        self.calibration_ = method
        X_va = X[cut:]
        if nested:
            # The serving calibration is fitted on the latest rows, predicted by a model that did not see them.
            before = self._fit_kind(kind, X[:cut], y_tr, seed, n_iter)
            raw_va = before.raw(X_va)
            # Outer figures: that model with the calibration fitted where the choice was made, scored on
            # rows neither the fit nor the choice saw.
            outer_cal = _Calibrator(method).fit(raw_pick[best], y_pick)
            self.validation_metrics_ = evaluate(y_va, expit(outer_cal(raw_va)))
        else:
            before = outer_candidates[kind]
            raw_va = raw_pick[best]
            self.validation_metrics_ = evaluate(y_va, expit(oof))
        self.validation_metrics_["rows_train"] = int(cut)
        self.validation_metrics_["selection"] = "nested" if nested else "outer"
        self.model_ = self._fit_kind(kind, X, yb, seed, n_iter) if self.refit else before
        self.n_iter_ = self.model_.n_iter
        self.calibrator_ = _Calibrator(method).fit(raw_va, y_va)
        log.info("risk_model.fitted", extra={"kind": kind, "calibration": method, "rows": n})
        return self

    def _fit_kind(self, kind: str, X: np.ndarray, y: np.ndarray, seed: int,
                  n_iter: int) -> _LinearModel | _TreeModel | _EnsembleModel:
        """Fit the chosen model form on ``X`` with the settings and number of trees found on the inner split."""
        w = _recency(len(y), self.recency_)
        linear = _LinearModel(self.C_, self.class_weight, seed).fit(X, y, w) if kind != "boosting" else None
        trees = (_TreeModel(self._tree_params(seed, max_iter=n_iter, early_stopping=False,
                                              leaves=self.max_leaf_nodes_)).fit(X, y, w)
                 if kind != "logistic" else None)
        if kind == "logistic":
            assert linear is not None
            return linear
        if kind == "boosting":
            assert trees is not None
            return trees
        assert linear is not None and trees is not None
        return _EnsembleModel(linear, trees, self.linear_share_)

    def _inner_candidates(
        self, X: np.ndarray, yb: np.ndarray, edges: list[int], half_lives: tuple[float | None, ...], seed: int,
        *, small: bool,
    ) -> tuple[dict[tuple[str, float | None], np.ndarray], dict[float | None, tuple[float, int, int, float]]]:
        """Predict the inner rows ``[edges[0], edges[-1])`` block by block with candidates fitted on every row before.

        Return each (form, half-life)'s out-of-time log-odds and, per half-life, the settings that made them.
        With ``small`` (forward-chained blocks of a short history) more settings are tried, each chosen by
        the log loss of the pooled blocks (smoother than the ranking, which then picks the form): the
        regularisation of the logistic model (``C`` or ``C_small``), the trees' shape (``max_leaf_nodes``
        or ``small_leaf_nodes``, two leaves being an additive model) and number of iterations (read off
        the staged predictions instead of a small early-stopping split), and the logistic model's share
        of the averaged form. A large history keeps one setting: ``C``, ``max_leaf_nodes``, early stopping
        and equal shares.
        """
        y_pick = yb[edges[0]:edges[-1]]
        Cs = tuple(dict.fromkeys((self.C, self.C_small) if small else (self.C,)))
        leaf_counts = tuple(dict.fromkeys((self.max_leaf_nodes, self.small_leaf_nodes) if small
                                          else (self.max_leaf_nodes,)))
        linear_parts: dict[tuple[float | None, float], list[np.ndarray]] = {
            (hl, C): [] for hl in half_lives for C in Cs}
        # per (half-life, leaves): staged log-odds [iteration, row] of each block (one stage without ``small``)
        tree_parts: dict[tuple[float | None, int], list[np.ndarray]] = {
            (hl, leaves): [] for hl in half_lives for leaves in leaf_counts}
        stopped: dict[tuple[float | None, int], int] = {}
        for lo, hi in pairwise(edges):
            for hl in half_lives:
                w = _recency(lo, hl)
                for C in Cs:
                    linear = _LinearModel(C, self.class_weight, seed).fit(X[:lo], yb[:lo], w)
                    linear_parts[(hl, C)].append(linear.raw(X[lo:hi]))
                for leaves in leaf_counts:
                    params = self._tree_params(seed, early_stopping=not small, leaves=leaves)
                    trees = _TreeModel(params).fit(X[:lo], yb[:lo], w)
                    if small:
                        staged = trees.est.staged_decision_function(X[lo:hi][:, trees.used])
                        tree_parts[(hl, leaves)].append(np.array([np.ravel(z) for z in staged]))
                    else:
                        stopped[(hl, leaves)] = trees.n_iter
                        tree_parts[(hl, leaves)].append(trees.raw(X[lo:hi])[None, :])
        raw_pick: dict[tuple[str, float | None], np.ndarray] = {}
        settings: dict[float | None, tuple[float, int, int, float]] = {}
        for hl in half_lives:
            linear_raw = {C: np.concatenate(linear_parts[(hl, C)]) for C in Cs}
            C = min(Cs, key=lambda c: _log_loss(y_pick, linear_raw[c]))  # ties: the first, ``C``
            trees_raw: dict[int, tuple[int, np.ndarray]] = {}
            for leaves in leaf_counts:
                stages = np.concatenate(tree_parts[(hl, leaves)], axis=1)
                if small:
                    at = int(np.argmin([_log_loss(y_pick, z) for z in stages]))
                    trees_raw[leaves] = (at + 1, stages[at])
                else:
                    trees_raw[leaves] = (stopped[(hl, leaves)], stages[0])
            leaves = min(leaf_counts, key=lambda k: _log_loss(y_pick, trees_raw[k][1]))
            n_iter, tree_raw = trees_raw[leaves]
            shares = LINEAR_SHARES if small else (0.5,)
            share = min(shares, key=lambda w: _log_loss(y_pick, mix(linear_raw[C], tree_raw, w)))
            raw_pick[("logistic", hl)] = linear_raw[C]
            raw_pick[("boosting", hl)] = tree_raw
            raw_pick[("ensemble", hl)] = mix(linear_raw[C], tree_raw, share)
            settings[hl] = (C, leaves, n_iter, share)
        return raw_pick, settings

    def _choose_calibration(self, raw: np.ndarray, y: np.ndarray, seed: int) -> tuple[str, np.ndarray]:
        """Pick the calibration with the best out-of-fold log loss; return it and its predictions."""
        methods = [self.calibration] if self.calibration != "auto" else ["none", "sigmoid", "isotonic"]
        if self.calibration == "auto" and len(y) < 500:
            methods.remove("isotonic")  # too few rows for a step function to beat two parameters
        folds = KFold(n_splits=5, shuffle=True, random_state=seed)
        best: tuple[float, str, np.ndarray] | None = None
        for method in methods:
            oof = np.empty_like(raw)
            for tr, te in folds.split(raw):
                if method != "none" and (y[tr].min() == y[tr].max()):
                    oof[te] = raw[te]
                    continue
                oof[te] = _Calibrator(method).fit(raw[tr], y[tr])(raw[te])
            loss = _log_loss(y, oof)
            if best is None or loss < best[0] - 1e-9:
                best = (loss, method, oof)
        assert best is not None
        return best[1], best[2]

    def _is_positive_label(self, label: Any) -> bool:
        return bool(label == 1) if isinstance(label, int | float | np.integer | np.floating | bool | np.bool_) else (
            str(label) in {"failure", "rollback", "incident", "True", "true"}
        )

    # -- prediction --------------------------------------------------------------------------

    def _validate(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)

    def _log_odds(self, X: np.ndarray) -> np.ndarray:
        if self.kind_ == "base_rate":
            return np.full(X.shape[0], float(logit(self.base_rate_)))
        return np.asarray(self.calibrator_(self.model_.raw(X)), dtype=float)

    def decision_function(self, X: Any) -> np.ndarray:
        """Return calibrated log-odds of the positive class (failure)."""
        return self._log_odds(self._validate(X))

    def predict_risk(self, X: Any) -> np.ndarray:
        """Return the calibrated probability of failure per row (also for the one-class fallback)."""
        return np.asarray(expit(self._log_odds(self._validate(X))))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities in the order of ``classes_``."""
        Xv = self._validate(X)
        if len(self.classes_) == 1:
            return np.ones((Xv.shape[0], 1))
        p = expit(self._log_odds(Xv))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """Return the more likely class per row."""
        Xv = self._validate(X)
        if len(self.classes_) == 1:
            return np.full(Xv.shape[0], self.classes_[0])
        return self.classes_[(self._log_odds(Xv) > 0).astype(int)]

    def contributions(self, X: Any) -> tuple[np.ndarray, float, np.ndarray]:
        """Return (per-feature credits, base log-odds, log-odds); credits sum to log-odds - base."""
        return self.contributions_array(self._validate(X))

    def contributions_array(self, Xv: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """``contributions`` for a float array already in ``feature_names_in_`` order (no checks; fast path)."""
        check_is_fitted(self, "classes_")
        n, d = Xv.shape
        if self.kind_ == "base_rate":
            b = float(logit(self.base_rate_))
            return np.zeros((n, d)), b, np.full(n, b)
        raw_credits = self.model_.contributions(Xv)
        raw_base = self.model_.base
        raw = raw_base + raw_credits.sum(axis=1)
        z = self.calibrator_(raw)
        base = float(self.calibrator_(np.array([raw_base]))[0])
        # The calibration is a monotone map of the raw score. For Platt it is linear, so credits
        # scale by its slope; in general each row's credits are scaled by the secant slope
        # between the base and the row, which keeps their signs and makes them add up exactly.
        span = raw - raw_base
        safe = np.where(np.abs(span) > 1e-12, span, 1.0)
        scale = np.where(np.abs(span) > 1e-12, (z - base) / safe, 0.0)
        credits = raw_credits * scale[:, None]
        return credits, base, z
