"""A trained risk model with its metadata: training, serialisation and the packaged prior.

The blob is ``MAGIC``, a 4-byte big-endian length, the metadata as UTF-8 JSON, another length and
the pickled lean copy of the estimator (``scorer.risk.lean``: numpy arrays only, what `gonogo model
explain` loads), then the pickled estimator. Blobs of the first format (no lean copy) still load. Pickle executes code when loaded, so blobs are only ever loaded from gonogo's own
model store or its package data (docs/risk-model.md), never from a user upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import platform
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from scorer.risk.blend import DEFAULT_K, BlendedRiskModel, model_frame
from scorer.risk.features import FEATURES, build_features, chronological_order
from scorer.risk.history import coerce_history, failure_labels
from scorer.risk.lean import MAGIC, lean, split_blob
from scorer.risk.model import RiskModel

log = logging.getLogger(__name__)

MAGIC_V1 = b"GONOGO-RISK-MODEL/1\n"
FORMAT_VERSION = 1
PRIOR_RESOURCE = ("scorer.risk.prior", "prior.bin")


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries a pickled model depends on."""
    out = {"python": platform.python_version()}
    for dist in ("gonogo", "scikit-learn", "numpy", "scipy", "pandas"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


@dataclass
class TrainedRiskModel:
    """A fitted ``RiskModel`` or ``BlendedRiskModel`` plus metadata (version, window, features, metrics)."""

    estimator: RiskModel | BlendedRiskModel
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))

    def predict_risk(self, features: pd.DataFrame) -> np.ndarray:
        """Return the probability of failure for feature rows from ``build_features``."""
        if isinstance(self.estimator, RiskModel):
            return self.estimator.predict_risk(model_frame(self.estimator, features))
        return self.estimator.predict_risk(features)

    def metadata_json(self) -> str:
        """Return the metadata as JSON (what a registry stores beside the blob)."""
        return json.dumps(self.metadata, sort_keys=True, default=_json_default)

    def to_bytes(self) -> bytes:
        """Serialise metadata, the lean copy and the estimator into one blob."""
        meta = self.metadata_json().encode()
        slim = pickle.dumps(lean(self.estimator), protocol=5)
        return (MAGIC + struct.pack(">I", len(meta)) + meta + struct.pack(">I", len(slim)) + slim
                + pickle.dumps(self.estimator, protocol=5))

    @classmethod
    def from_bytes(cls, blob: bytes) -> TrainedRiskModel:
        """Load a blob written by ``to_bytes`` (trusted sources only: it unpickles)."""
        meta, _, rest = split_blob(blob, legacy=MAGIC_V1)
        estimator = pickle.loads(rest)
        built = meta.get("libraries", {}).get("scikit-learn")
        if built and built != library_versions()["scikit-learn"]:
            log.warning("risk_model.version_mismatch",
                        extra={"built_with": built, "running": library_versions()["scikit-learn"]})
        return cls(estimator=estimator, metadata=meta)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, pd.Timestamp | datetime):
        return o.isoformat()
    raise TypeError(f"cannot store {type(o).__name__} in model metadata")


def labelled_training_set(history: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Return (features, labels, typed history) of labelled rows in chronological order."""
    h = coerce_history(history)
    features = build_features(h)
    order = chronological_order(h)
    h, features = h.iloc[order], features.iloc[order]
    y = failure_labels(h).to_numpy()
    known = ~np.isnan(y)
    return features[known], y[known].astype(int), h[known]


def load_prior() -> TrainedRiskModel | None:
    """Return the packaged cold-start prior, or None when the package was built without it."""
    try:
        blob = resources.files(PRIOR_RESOURCE[0]).joinpath(PRIOR_RESOURCE[1]).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        return None
    return TrainedRiskModel.from_bytes(blob)


def train_model(
    history: pd.DataFrame,
    *,
    prior: TrainedRiskModel | None = None,
    k: float = DEFAULT_K,
    random_state: int = 0,
    params: dict[str, Any] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> TrainedRiskModel:
    """Train a repository model on its history (blended with ``prior`` when given), with metadata."""
    step = on_step or (lambda _name: None)
    step("features")
    X, y, h = labelled_training_set(history)
    if len(y) == 0 and prior is None:
        raise ValueError("the history has no labelled outcomes (outcome column empty); record outcomes or "
                         "use the packaged prior")
    step("fit")
    local: RiskModel | None = None
    if len(y):
        local = RiskModel(random_state=random_state, **(params or {})).fit(X, y)
    estimator: RiskModel | BlendedRiskModel
    if prior is not None:
        if not isinstance(prior.estimator, RiskModel):
            raise TypeError("the prior must be a plain RiskModel")
        estimator = BlendedRiskModel(prior.estimator, local, n_outcomes=len(y), n_failures=int(y.sum()), k=k)
    else:
        assert local is not None
        estimator = local
    step("metadata")
    created = datetime.now(UTC)
    window = {
        "min_created_at": h["created_at"].min().isoformat() if len(h) else None,
        "max_created_at": h["created_at"].max().isoformat() if len(h) else None,
    }
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    digest.update(y.tobytes())
    digest.update(json.dumps(params or {}, sort_keys=True).encode())
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "version": f"{created:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}",
        "created_at": created.isoformat(),
        "training_window": window,
        "rows": len(y),
        "failures": int(y.sum()),
        "repositories": sorted(h["repository"].dropna().unique().tolist()),
        "features": list(FEATURES),
        "libraries": library_versions(),
        "kind": local.kind_ if local is not None else "prior_only",
        "calibration": local.calibration_ if local is not None else None,
        "recency_half_life": getattr(local, "recency_", None) if local is not None else None,
        "fallback_reason": local.fallback_reason_ if local is not None else None,
        "metrics": local.validation_metrics_ if local is not None else {},
        "params": params or {},
        "random_state": random_state,
    }
    if isinstance(estimator, BlendedRiskModel):
        meta["blend"] = {"prior_version": prior.version if prior else None, "k": k, "weight": estimator.weight}
    step("done")
    log.info("risk_model.trained", extra={"version": meta["version"], "rows": meta["rows"], "kind": meta["kind"]})
    return TrainedRiskModel(estimator=estimator, metadata=meta)
