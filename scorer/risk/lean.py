"""A fitted risk model as plain arrays: the same credits and log-odds, without scikit-learn.

``lean(estimator)`` copies what scoring needs out of a fitted ``RiskModel`` or ``BlendedRiskModel``
(standardisation and coefficients, packed trees, the calibration map, the blend weight and shift)
into objects that need only numpy. ``TrainedRiskModel.to_bytes`` stores it beside the estimator,
so `gonogo model explain` loads and scores a model without importing scikit-learn or SciPy, which
is most of its start-up. ``tests/test_risk_lean.py`` checks it agrees with the estimator exactly.
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorer.risk.trees import PackedTrees

_EPS = 1e-3  # as in scorer.risk.model: probabilities are kept in [0.001, 0.999]
MAGIC = b"GONOGO-RISK-MODEL/2\n"  # the model file's header (scorer.risk.artifact writes it)
_NOT_A_MODEL = ("not a gonogo risk model: the file does not start with the gonogo model header; "
                "train one with `gonogo model train`")


def split_blob(blob: bytes, legacy: bytes | None = None) -> tuple[dict[str, Any], bytes | None, bytes]:
    """(metadata, pickled lean copy or None for a first-format blob, pickled estimator) of a model blob."""
    fmt2 = blob.startswith(MAGIC)
    if not fmt2 and not (legacy and blob.startswith(legacy)):
        raise ValueError(_NOT_A_MODEL)
    start = len(MAGIC) if fmt2 else len(legacy or b"")
    (size,) = struct.unpack(">I", blob[start : start + 4])
    meta = json.loads(blob[start + 4 : start + 4 + size].decode())
    pos = start + 4 + size
    if not fmt2:
        return meta, None, blob[pos:]
    (slim,) = struct.unpack(">I", blob[pos : pos + 4])
    return meta, blob[pos + 4 : pos + 4 + slim], blob[pos + 4 + slim :]


@dataclass(frozen=True)
class LeanTrained:
    """The lean copy of a ``TrainedRiskModel``: ``estimator`` and ``metadata``, as ``scorer.risk.explain`` reads."""

    estimator: LeanRiskModel | LeanBlend
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))


def read_lean(blob: bytes) -> LeanTrained | None:
    """The lean copy and metadata of a model blob, without unpickling the estimator (None: an older blob).

    Trusted sources only, as for ``TrainedRiskModel.from_bytes``: it unpickles.
    """
    if not blob.startswith(MAGIC):
        return None
    meta, slim, _ = split_blob(blob)
    assert slim is not None
    return LeanTrained(pickle.loads(slim), meta)


def expit(z: Any) -> Any:
    """The logistic function (numpy only)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def logit(p: Any) -> Any:
    """The log-odds of a probability (numpy only)."""
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class LeanLinear:
    median: np.ndarray
    indicator_of: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    source: np.ndarray
    coef: np.ndarray
    intercept: float
    n_features: int

    def _z(self, X: np.ndarray) -> np.ndarray:
        missing = np.isnan(X)
        filled = np.where(missing, self.median, X)
        return (np.hstack([filled, missing[:, self.indicator_of].astype(float)]) - self.mean) / self.scale

    def raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._z(X) @ self.coef + self.intercept)

    @property
    def base(self) -> float:
        return self.intercept

    def contributions(self, X: np.ndarray) -> np.ndarray:
        terms = self._z(X) * self.coef
        out = np.zeros((X.shape[0], self.n_features))
        np.add.at(out.T, self.source, terms.T)
        return out


@dataclass(frozen=True)
class LeanTrees:
    used: np.ndarray
    n_features: int
    packed: PackedTrees

    def raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.packed.base + self.packed.contributions(X[:, self.used]).sum(axis=1))

    @property
    def base(self) -> float:
        return self.packed.base

    def contributions(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], self.n_features))
        out[:, self.used] = self.packed.contributions(X[:, self.used])
        return out


@dataclass(frozen=True)
class LeanEnsemble:
    linear: LeanLinear
    trees: LeanTrees
    linear_share: float = 0.5  # weight of the logistic log-odds (files written before it was chosen: 0.5)

    def raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(mix(self.linear.raw(X), self.trees.raw(X), self.linear_share))

    @property
    def base(self) -> float:
        return float(mix(self.linear.base, self.trees.base, self.linear_share))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(mix(self.linear.contributions(X), self.trees.contributions(X), self.linear_share))


def mix(linear: Any, trees: Any, linear_share: float) -> Any:
    """The averaged form's log-odds (or credits): the logistic part weighted by ``linear_share``, the trees by the rest.

    The estimator (scorer/risk/model.py) mixes with this very function, so the lean copy scores exactly as it.
    """
    return linear_share * linear + (1.0 - linear_share) * trees


@dataclass(frozen=True)
class LeanCalibrator:
    method: str
    a: float = 1.0
    b: float = 0.0
    x: np.ndarray | None = None  # isotonic: the fitted step function's thresholds and values
    y: np.ndarray | None = None

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            return np.asarray(self.a * raw + self.b)
        if self.method == "isotonic":
            assert self.x is not None and self.y is not None
            p = np.interp(np.clip(raw, self.x[0], self.x[-1]), self.x, self.y)
            return np.asarray(logit(np.clip(p, _EPS, 1 - _EPS)))
        return np.asarray(raw, dtype=float)


@dataclass(frozen=True)
class LeanRiskModel:
    """``RiskModel.contributions_array`` in numpy only."""

    feature_names: list[str]
    kind: str
    base_rate: float
    model: LeanLinear | LeanTrees | LeanEnsemble | None
    calibrator: LeanCalibrator

    def contributions_array(self, Xv: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        n, d = Xv.shape
        if self.model is None:
            b = float(logit(self.base_rate))
            return np.zeros((n, d)), b, np.full(n, b)
        raw_credits = self.model.contributions(Xv)
        raw_base = self.model.base
        raw = raw_base + raw_credits.sum(axis=1)
        z = self.calibrator(raw)
        base = float(self.calibrator(np.array([raw_base]))[0])
        span = raw - raw_base  # the same secant scaling as RiskModel.contributions_array
        safe = np.where(np.abs(span) > 1e-12, span, 1.0)
        scale = np.where(np.abs(span) > 1e-12, (z - base) / safe, 0.0)
        return raw_credits * scale[:, None], base, z

    def frame_contributions(self, features: Any) -> tuple[np.ndarray, float, np.ndarray]:
        X = features.reindex(columns=self.feature_names).astype(float).to_numpy(dtype=float)
        return self.contributions_array(X)


@dataclass(frozen=True)
class LeanBlend:
    """``BlendedRiskModel.contributions`` in numpy only (weight and prior shift stored)."""

    prior: LeanRiskModel
    local: LeanRiskModel | None
    weight: float
    shift: float
    feature_names: list[str]

    def frame_contributions(self, features: Any) -> tuple[np.ndarray, float, np.ndarray]:
        names, w = self.feature_names, self.weight
        pos = {n: i for i, n in enumerate(names)}

        def spread(model: LeanRiskModel) -> tuple[np.ndarray, float, np.ndarray]:
            credits, base, z = model.frame_contributions(features)
            out = np.zeros((len(features), len(names)))
            for j, name in enumerate(model.feature_names):
                out[:, pos[name]] += credits[:, j]
            return out, base, z

        cp, bp, zp = spread(self.prior)
        credits, base, z = (1 - w) * cp, (1 - w) * (bp + self.shift), (1 - w) * (zp + self.shift)
        if self.local is not None and w > 0:
            cl, bl, zl = spread(self.local)
            credits, base, z = credits + w * cl, base + w * bl, z + w * zl
        return credits, float(base), z


def _lean_part(m: Any) -> LeanLinear | LeanTrees | LeanEnsemble:
    name = type(m).__name__
    if name == "_LinearModel":
        std = m.std
        return LeanLinear(std.median, std.indicator_of, std.mean, std.scale, std.source,
                          np.asarray(m.lr.coef_[0], dtype=float), float(m.lr.intercept_[0]), int(m.n_features))
    if name == "_TreeModel":
        return LeanTrees(m.used, int(m.n_features), m.packed)
    if name == "_EnsembleModel":
        linear, trees = _lean_part(m.linear), _lean_part(m.trees)
        assert isinstance(linear, LeanLinear) and isinstance(trees, LeanTrees)
        return LeanEnsemble(linear, trees, float(getattr(m, "linear_share", 0.5)))
    raise TypeError(f"no lean form for {name}")


def _lean_calibrator(c: Any) -> LeanCalibrator:
    if c.method == "sigmoid":
        return LeanCalibrator("sigmoid", a=c.a, b=c.b)
    if c.method == "isotonic":
        return LeanCalibrator("isotonic", x=np.asarray(c.iso.X_thresholds_, dtype=float),
                              y=np.asarray(c.iso.y_thresholds_, dtype=float))
    return LeanCalibrator("none")


def lean_risk_model(model: Any) -> LeanRiskModel:
    """The lean copy of a fitted ``RiskModel``."""
    names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if model.kind_ == "base_rate":
        return LeanRiskModel(names, "base_rate", float(model.base_rate_), None, LeanCalibrator("none"))
    return LeanRiskModel(names, model.kind_, float(model.base_rate_), _lean_part(model.model_),
                         _lean_calibrator(model.calibrator_))


def lean(estimator: Any) -> LeanRiskModel | LeanBlend:
    """The lean copy of a fitted ``RiskModel`` or ``BlendedRiskModel``."""
    if hasattr(estimator, "prior") and hasattr(estimator, "weight"):
        return LeanBlend(lean_risk_model(estimator.prior),
                         lean_risk_model(estimator.local) if estimator.local is not None else None,
                         float(estimator.weight), float(estimator.prior_shift()), list(estimator.feature_names))
    return lean_risk_model(estimator)
