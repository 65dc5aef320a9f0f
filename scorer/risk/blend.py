"""Cold start: blend the public-data prior with the repository's own model as outcomes accumulate.

In log-odds, ``z = w * z_repo + (1 - w) * (z_prior + shift)`` with ``w = n / (n + k)``, where n is
the number of labelled outcomes the repository model learnt from. ``shift`` moves the prior's
base log-odds to the repository's own failure rate, smoothed towards the prior's rate with
``m`` pseudo-outcomes: public commit data has a different base rate than deployments, but its
ranking of risky changes still carries over. Both parts are additive per feature, so the blend's
credits (``w`` times the repository credits plus ``1 - w`` times the prior credits) stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from scorer.risk.model import RiskModel

DEFAULT_K = 100.0  # outcomes at which the repository model and the prior weigh the same
DEFAULT_M = 20.0  # pseudo-outcomes for the prior's base rate when re-centring it


def model_frame(model: RiskModel, features: pd.DataFrame) -> pd.DataFrame:
    """Return ``features`` with exactly the model's columns (absent ones as unknown)."""
    names = list(getattr(model, "feature_names_in_", features.columns))
    return features.reindex(columns=names).astype(float)


def _credits_in(model: RiskModel, features: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, float, np.ndarray]:
    frame = model_frame(model, features)
    credits, base, z = model.contributions_array(frame.to_numpy(dtype=float))
    out = np.zeros((len(features), len(names)))
    pos = {n: i for i, n in enumerate(names)}
    for j, name in enumerate(frame.columns):
        out[:, pos[name]] += credits[:, j]
    return out, base, z


@dataclass
class BlendedRiskModel:
    """The prior and (optionally) the repository's model, weighted by the outcomes seen."""

    prior: RiskModel
    local: RiskModel | None
    n_outcomes: int
    n_failures: int
    k: float = DEFAULT_K
    m: float = DEFAULT_M

    @property
    def weight(self) -> float:
        """Weight of the repository model, n / (n + k); 0 without one."""
        if self.local is None or self.n_outcomes <= 0:
            return 0.0
        return self.n_outcomes / (self.n_outcomes + self.k)

    @property
    def feature_names(self) -> list[str]:
        names = list(getattr(self.local, "feature_names_in_", [])) if self.local is not None else []
        names += [n for n in getattr(self.prior, "feature_names_in_", []) if n not in names]
        return names

    def prior_shift(self) -> float:
        """Log-odds added to the prior so its base rate matches the repository's smoothed rate."""
        _, prior_base, _ = self.prior.contributions(model_frame(self.prior, pd.DataFrame(index=[0])))
        prior_rate = float(expit(prior_base))
        rate = (self.n_failures + self.m * prior_rate) / (max(self.n_outcomes, 0) + self.m)
        return float(logit(np.clip(rate, 1e-3, 1 - 1e-3)) - prior_base)

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]:
        """Return (credits per ``feature_names``, base log-odds, log-odds) for each row."""
        names = self.feature_names
        w = self.weight
        shift = self.prior_shift()
        cp, bp, zp = _credits_in(self.prior, features, names)
        credits, base, z = (1 - w) * cp, (1 - w) * (bp + shift), (1 - w) * (zp + shift)
        if self.local is not None and w > 0:
            cl, bl, zl = _credits_in(self.local, features, names)
            credits, base, z = credits + w * cl, base + w * bl, z + w * zl
        return credits, float(base), z

    def predict_risk(self, features: pd.DataFrame) -> np.ndarray:
        """Return the blended probability of failure per row."""
        return np.asarray(expit(self.contributions(features)[2]))
