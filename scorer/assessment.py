"""What the scorer hands to the judgement layer: the evidence plus the predicted risk."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scorer.evidence import Evidence


class Driver(BaseModel):
    """One feature's contribution to a risk prediction, in log-odds against the base rate."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    value: float | str | bool | None
    contribution: float  # log-odds; positive raises the risk
    text: str  # plain words: "4,120 lines changed, 9x this repository's median: +0.11"


class RiskEstimate(BaseModel):
    """Probability that the deployment fails, and why."""

    model_config = ConfigDict(extra="forbid")

    probability: float  # 0..1
    source: Literal["model", "prior", "rules"]  # trained model, cold-start prior, or rule-based estimate
    model_version: str | None = None
    base_rate: float | None = None
    drivers: list[Driver] = Field(default_factory=list)


class Assessment(BaseModel):
    """Evidence and risk for one deployment: the input of ``rules.decide``."""

    model_config = ConfigDict(extra="forbid")

    evidence: Evidence
    risk: RiskEstimate | None = None
