"""The whole judgement pipeline in one pure call, shared by the app and ``gonogo assess``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rules.decide import decide, decide_invalid_policy
from rules.policy import Policy, PolicyError
from rules.types import Decision, Waiver
from scorer.assessment import Assessment, RiskEstimate
from scorer.evidence import Evidence
from scorer.heuristic import estimate_risk


def evaluate(
    evidence: Evidence,
    policy: Policy | PolicyError,
    environment: str | None = None,
    now: datetime | None = None,
    risk: RiskEstimate | None = None,
    waivers: Sequence[Waiver] = (),
) -> Decision:
    """Turn evidence into a decision: risk (model or rule-based), rules, scores, verdict, strategy.

    Pass the PolicyError itself when the policy file is invalid: the result escalates with its errors.
    """
    env = environment or evidence.environment
    when = now or evidence.created_at
    assessment = Assessment(evidence=evidence, risk=risk or estimate_risk(evidence))
    if isinstance(policy, PolicyError):
        return decide_invalid_policy(policy, assessment, env, when, waivers)
    return decide(policy, assessment, env, when, waivers)
