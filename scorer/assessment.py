"""What the scorer hands to the judgement layer: the evidence plus the predicted risk."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scorer.evidence import Evidence


class Driver(BaseModel):
    """One feature's contribution to a risk prediction, in log-odds against the base rate."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    feature: str
    value: float | str | bool | None
    contribution: float  # log-odds; positive raises the risk
    text: str  # plain words: "4,120 lines changed, 9x this repository's median: +0.11"


class ModelQuality(BaseModel):
    """How good the model behind a risk estimate was on held-out later deployments (its outer validation)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    deployments: int  # held-out deployments the figures come from
    roc_auc: float | None = None
    catch_rate_10: float | None = None  # share of failures among the riskiest 10 % gated
    ece: float | None = None  # expected calibration error, 10 bins


class RiskEstimate(BaseModel):
    """Probability that the deployment fails, and why."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    probability: float  # 0..1
    source: Literal["model", "prior", "rules"]  # trained model, cold-start prior, or rule-based estimate
    model_version: str | None = None
    base_rate: float | None = None
    drivers: list[Driver] = Field(default_factory=list)
    quality: ModelQuality | None = None  # None: not measured on this repository's deployments


class Assessment(BaseModel):
    """Evidence and risk for one deployment: the input of ``rules.decide``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    evidence: Evidence
    risk: RiskEstimate | None = None
