"""Thresholds that learn from outcomes: a major rule relaxed for one repository once its record vouches for it.

A major finding sends a deployment to a reviewer. When, in one repository and environment, the
deployments that rule flagged were nearly always approved by reviewers and then nearly never failed,
asking again teaches nobody anything: the rule becomes a recommendation (minor) there, and says so
in the report. The bound is statistical and uses the environment's own tolerance: the one-sided 95 %
upper bound of the failure rate among those deployments must not exceed ``approve.max_risk``. The
relaxation is read afresh for every decision, so failures withdraw it as soon as the bound is broken.

What it never does: relax a blocker, a security or performance rule (only ``LEARNABLE_RULES``), a
finding whose severity the policy sets (or GNG-TEST-002 under ``tests.require_reports``), or anything
about evidence that is missing or unread; the
risk, score and confidence limits apply to the relaxed deployment as to any other. Nor does it count what a
deployer can bring about alone (github_app/learning.py): outcomes of releases the gate did not let through,
their own approvals, or the same commit or day many times over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, ConfigDict

from rules.policy import EnvironmentPolicy
from scorer.evidence import FAILED_OUTCOMES

Z_95 = 1.645  # one-sided 95 %


@dataclass(frozen=True)
class PastDeployment:
    """What the history says about one earlier deployment: its major findings, who answered, the outcome."""

    majors: tuple[str, ...]  # rules that failed at major severity (before any learned relaxation)
    asked: bool  # it was handed to reviewers (an enforced escalation, not a dry run), so the answer is theirs
    answer: str | None  # approved (by a reviewer other than the deployer) | unvouched (approved otherwise) | rejected
    outcome: str | None  # success | failure | rollback | incident, once known (None unless the gate let it through)
    sha: str | None = None  # the commit: every deployment of one commit counts once
    day: date | None = None  # the day it was deployed: every deployment of one day counts once


class TrackRecord(BaseModel):
    """One rule's record in one repository and environment, and whether it earned a relaxation."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    flagged: int = 0  # earlier deployments where it failed as a major
    reviewed: int = 0  # of those escalated, decided by a reviewer
    approved: int = 0  # of those reviewed, approved
    deployed: int = 0  # with an outcome recorded
    failed: int = 0  # of those deployed, failed
    failure_bound: float | None = None  # one-sided 95 % upper bound of failed / deployed
    error: str | None = None  # the record could not be read: nothing is relaxed
    relaxed: bool = False
    why: str = ""


def wilson_upper(failures: int, n: int, z: float = Z_95) -> float:
    """Upper Wilson score bound of a failure rate (1.0 with no observations)."""
    if n <= 0:
        return 1.0
    p = failures / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def _units(rows: list[PastDeployment]) -> list[list[PastDeployment]]:
    """Group deployments that share a commit or a day: each group is one observation.

    Re-running one commit, or a burst of escalations approved in one sitting, is one piece of evidence,
    not many: a record of ``min_deployments`` needs as many different commits on as many different days.
    """
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, object], int] = {}
    for i, row in enumerate(rows):
        for key in (("sha", row.sha), ("day", row.day)):
            if key[1] is None:
                continue
            j = first.setdefault(key, i)
            parent[root(i)] = root(j)
    groups: dict[int, list[PastDeployment]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(root(i), []).append(row)
    return list(groups.values())


def tally(rows: Iterable[PastDeployment], rule_ids: Iterable[str]) -> dict[str, TrackRecord]:
    """Count, per rule, what happened to the earlier deployments it flagged (one count per commit and day).

    In a group, any rejection (or approval not by an independent reviewer) counts against the approval
    share, and any failure makes the group's outcome a failure.
    """
    rows = list(rows)
    records = {rid: TrackRecord(rule_id=rid) for rid in rule_ids}
    for rid, rec in records.items():
        for unit in _units([row for row in rows if rid in row.majors]):
            rec.flagged += 1
            answers = [row.answer for row in unit if row.asked and row.answer in ("approved", "unvouched", "rejected")]
            if answers:
                rec.reviewed += 1
                rec.approved += all(a == "approved" for a in answers)
            outcomes = [row.outcome for row in unit if row.outcome is not None]
            if outcomes:
                rec.deployed += 1
                rec.failed += any(o in FAILED_OUTCOMES for o in outcomes)
    return records


def judge(env: EnvironmentPolicy, records: Mapping[str, TrackRecord]) -> dict[str, TrackRecord]:
    """Decide which rules the environment's learning settings relax, with the reason in plain words."""
    settings = env.learning
    out: dict[str, TrackRecord] = {}
    for rid in settings.rules:
        rec = records.get(rid, TrackRecord(rule_id=rid)).model_copy()
        rec.failure_bound = round(wilson_upper(rec.failed, rec.deployed), 4)
        approval = rec.approved / rec.reviewed if rec.reviewed else None
        limit = env.approve.max_risk
        if not settings.enabled:
            rec.why = "learning is turned off"
        elif rec.error is not None:
            rec.why = f"the outcome record could not be read ({rec.error}), so nothing is relaxed"
        elif rid == "GNG-TEST-002" and env.tests.require_reports:
            rec.why = "tests.require_reports insists on test reports"
        elif approval is not None and approval < settings.min_approval:
            rec.why = f"reviewers approved {rec.approved} of {rec.reviewed}, under {settings.min_approval:.0%}"
        elif rec.deployed < settings.min_deployments:
            rec.why = f"{rec.deployed} of the {settings.min_deployments} outcomes needed"
        elif rec.failure_bound > limit:
            rec.why = (f"{rec.failed} of {rec.deployed} failed: the failure rate may be up to "
                       f"{rec.failure_bound:.0%}, above approve.max_risk {limit:.0%}")  # fmt: skip
        else:
            rec.relaxed = True
            approvals = f"reviewers approved {rec.approved} of {rec.reviewed}; " if rec.reviewed else ""
            rec.why = (f"learned from outcomes: {approvals}{rec.deployed - rec.failed} of {rec.deployed} earlier "
                       f"deployments with this finding succeeded (failure rate at most {rec.failure_bound:.0%} "
                       f"<= approve.max_risk {limit:.0%})")  # fmt: skip
        out[rid] = rec
    return out
