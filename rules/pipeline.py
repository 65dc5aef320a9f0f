"""The whole judgement pipeline in one pure call, shared by the app and ``gonogo assess``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from rules.decide import decide, decide_invalid_policy
from rules.learning import TrackRecord
from rules.policy import Policy, PolicyError
from rules.types import Decision, Waiver
from scorer.assessment import Assessment, RiskEstimate
from scorer.evidence import Availability, ChangePart, ChecksPart, Evidence, OperationalPart
from scorer.heuristic import estimate_risk
from scorer.parsers import ArtifactResults


def evaluate(
    evidence: Evidence,
    policy: Policy | PolicyError,
    environment: str | None = None,
    now: datetime | None = None,
    risk: RiskEstimate | None = None,
    waivers: Sequence[Waiver] = (),
    scope: Collection[str] | None = None,
    track: Mapping[str, TrackRecord] | None = None,
) -> Decision:
    """Turn evidence into a decision: risk (model or rule-based), rules, scores, verdict, strategy.

    Pass the PolicyError itself when the policy file is invalid: the result escalates with its errors.
    ``scope`` limits the parts the confidence expects (``OFFLINE_SCOPE`` for a folder of artifacts).
    ``track`` is the repository's outcome record per learnable rule (rules.learning), when it has one.
    """
    env = environment or evidence.environment
    when = now or evidence.created_at
    assessment = Assessment(evidence=evidence, risk=risk or estimate_risk(evidence))
    if isinstance(policy, PolicyError):
        return decide_invalid_policy(policy, assessment, env, when, waivers, scope)
    return decide(policy, assessment, env, when, waivers, scope, track)


# What an offline assessment can read at all: checks, the change and the deployment history come
# from GitHub and gonogo's database, so their absence there says nothing about the release.
OFFLINE_SCOPE = frozenset({"tests", "coverage", "security", "performance"})


def evidence_from_artifacts(
    results: ArtifactResults,
    *,
    environment: str,
    repository: str,
    sha: str,
    created_at: datetime,
    deployment_id: str = "offline",
) -> Evidence:
    """Build Evidence from parsed artifacts alone (offline): GitHub-only parts are not configured."""
    offline = "offline assessment: no GitHub data"
    return Evidence(
        deployment_id=deployment_id, repository=repository, environment=environment, sha=sha, created_at=created_at,
        tests=results.tests, coverage=results.coverage, security=results.security, performance=results.performance,
        checks=ChecksPart(availability=Availability.NOT_CONFIGURED, reason=f"{offline} (check runs)"),
        change=ChangePart(availability=Availability.NOT_CONFIGURED, reason=f"{offline} (compare)"),
        operational=OperationalPart(availability=Availability.NOT_CONFIGURED, reason=f"{offline} (deployment history)"),
        not_understood=results.not_understood, not_understood_total=results.not_understood_total,
    )  # fmt: skip
