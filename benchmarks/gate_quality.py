"""Gate quality on a simulated fleet: how often gonogo decides alone, lets failures through, blocks good releases.

    .venv/bin/python benchmarks/gate_quality.py [--repos 50] [--months 12] [--seed 7] [--quick]
        [--svg docs/images/gate-quality.svg] [--json out.json] [--also-seeds 1,2,3,4,5] [--linear] [--max-risk 0.1]

The fleet. ``--repos`` repositories (at least 50 by default) of three sizes (deploys per week 1 /
2.5 / 5, change sizes with medians 60 / 150 / 400 lines) and different habits: uploaded JUnit
reports (60 %) or tests only in a ``test`` check (30 %) or no visible tests; coverage reports (40 %),
security scanning (70 %), load tests (25 %); its own migration rate, flaky-check rate, rate of
commits with failing tests, and a hidden propensity to fail (logit-normal around 2.7 %, so that
the fleet's change failure rate lands near the 5-10 % reported for teams that test in CI).

The truth. A deployment fails with probability ``expit(z)`` where ``z`` is the repository's hidden
propensity plus: 0.45 per doubling of the change beyond 200 lines, 0.9 for a database migration,
2.2 when tests fail, 1.4 when another check fails, 0.7 per critical and 0.15 per high vulnerability
(capped at 2), 1.2 for a real latency regression, 0.8 for errors under load, 0.4 for line
coverage under 60 %, 0.3 when the main author has under 5 commits, 0.3 on a weekend. Every term
happens whether or not the repository measures it (a repository that does not scan still ships
vulnerabilities, one without load tests still regresses); the gate sees a term only in evidence
the repository produces. The hidden propensity shows only through the repository's own outcomes.

The replay. Every deployment, in time order, goes through ``rules.pipeline.evaluate`` with the
default policy for ``production``: the same call the app makes after collecting evidence (the
webhook, GitHub and database plumbing around it are measured by benchmarks/decision_latency.py
and not repeated 10,000 times here). Risk comes as in the app's ``RiskProvider``: the rule-based
estimate while there is no model, then a global model retrained at the start of every month on
every outcome recorded so far (``scorer.risk.artifact.train_model`` with the packaged prior, the
path of ``gonogo model retrain``) and served only if the app's model registry activates it
(``github_app.risk_registry.register``, champion/challenger, in a throwaway SQLite database), its features built with ``scorer.risk.features.build_features``
from the same history table the app keeps. Outcomes come back as the app receives them: a
deployment gonogo approves is deployed and its outcome recorded; an escalated one is deployed when
the simulated reviewer approves it (90 %); a rejected one is never deployed, so no outcome. Each
decision's major findings, verdict, answer and outcome form the repository's outcome record, which
the next decisions read through ``rules.learning.tally`` as the app does (github_app/learning.py,
one count per commit and per day):
the policy's ``learning`` section relaxes a large change or a missing test report into a
recommendation for a repository once that record vouches for it (docs/policy.md).

Per month it reports, for gonogo and for the naive gate "approve when every check is green":
decided automatically (go or no-go without a human), escaped failures (approved, then failed) and
false blocks (rejected or escalated, though it would have succeeded). Targets: at least 80 %
decided automatically after the first month, escaped failures at most half the naive gate's, and
a false-block rate that falls as the model learns. Month by month, the rate mixes what gonogo learnt
with what happened to be deployed that month; the learning curve separates the two: the last month's
deployments are decided again (with the evidence they had) with the model and outcome record of the
start of each month, so only the knowledge changes, and none of it has seen the last month's outcomes.
The best possible gate. To tell what gonogo fails to learn from what no gate could do, every
deployment is also decided by an oracle that knows its true probability of failure and approves
under the one threshold that keeps the year's escaped failures within half the naive gate's, while
keeping gonogo's floor (what gonogo rejected stays rejected; what it escalated for missing evidence,
and in a second form for open high findings, stays escalated). Its share decided automatically is an
upper bound for gonogo's under the same floor; its false-block rate, from knowledge that never
changes, shows how much a month's rate moves with what is deployed alone.

``--max-risk`` sets ``production``'s approve.max_risk as a repository's policy would (the default pack's is
0.15), to see what a stricter or looser line trades. ``--quick`` runs 50 repositories for 4 months; ``--also-seeds 1,2,3`` replays fleets drawn with other
seeds and prints a line of targets for each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from github_app import db
from github_app.risk_registry import register
from rules.learning import PastDeployment, tally
from rules.pipeline import evaluate
from rules.policy import Policy, PolicyError, default_policy, effective, load_policy_text
from scorer.assessment import RiskEstimate
from scorer.evidence import HISTORY_COLUMNS, Evidence
from scorer.risk.artifact import TrainedRiskModel, load_prior, train_model
from scorer.risk.features import build_features
from scorer.risk.history import coerce_history

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
ENV = "production"
REVIEWER_APPROVES = 0.9
SIZES = {"small": (1.0, 60.0), "medium": (2.5, 150.0), "large": (5.0, 400.0)}


def expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class Repo:
    """One simulated repository: its size, its habits and its hidden propensity to fail."""

    name: str
    per_week: float
    median_lines: float
    tests: str  # reports | check | none
    coverage: bool
    scanning: bool
    load_tests: bool
    migration_rate: float
    failing_tests_rate: float
    flaky_check_rate: float
    coverage_mean: float
    propensity: float  # hidden log-odds
    deployed: list[tuple[datetime, bool]] = field(default_factory=list)  # (when, failed) of deployed releases
    past: list[tuple[datetime, PastDeployment]] = field(default_factory=list)  # what the history table records


def make_fleet(n: int, rng: np.random.Generator) -> list[Repo]:
    fleet = []
    for i in range(n):
        size = ("small", "medium", "large")[i % 3]
        per_week, median = SIZES[size]
        fleet.append(Repo(
            name=f"fleet/{size}-{i:02d}", per_week=per_week * rng.uniform(0.7, 1.3), median_lines=median,
            tests=str(rng.choice(["reports", "check", "none"], p=[0.6, 0.3, 0.1])),
            coverage=bool(rng.random() < 0.4), scanning=bool(rng.random() < 0.7), load_tests=bool(rng.random() < 0.25),
            migration_rate=float(rng.uniform(0.02, 0.12)), failing_tests_rate=float(rng.uniform(0.02, 0.08)),
            flaky_check_rate=float(rng.uniform(0.01, 0.05)), coverage_mean=float(rng.uniform(0.55, 0.9)),
            propensity=float(rng.normal(-3.6, 0.6)),
        ))  # fmt: skip
    return fleet


@dataclass
class Deployment:
    repo: Repo
    index: int
    created_at: datetime
    facts: dict[str, Any]
    p_fail: float
    would_fail: bool
    evidence: Evidence | None = None  # as collected when it was decided (the learning curve decides it again)
    risk_row: dict[str, Any] | None = None  # its history row as the week's model features saw it
    verdict: str | None = None  # gonogo's verdict when it was decided live
    unread: bool = False  # escalated because evidence was missing or unreadable (no approval may skip that)
    vulnerable: bool = False  # a security rule failed as a major (open high findings, alerts in changed files)


def _deployment(repo: Repo, index: int, when: datetime, rng: np.random.Generator) -> Deployment:
    lines = max(1, int(rng.lognormal(math.log(repo.median_lines), 1.0)))
    files = max(1, int(lines / rng.uniform(20, 60)))
    migration = bool(rng.random() < repo.migration_rate)
    failing = int(rng.integers(1, 4)) if rng.random() < repo.failing_tests_rate else 0
    other_check_failed = bool(rng.random() < repo.flaky_check_rate)
    # What a repository does not measure still happens: its vulnerabilities, regressions and coverage exist
    # whether or not it scans, load-tests or reports coverage; the gate sees them only if it does (evidence_of).
    critical = int(rng.poisson(0.02))
    high = int(rng.poisson(0.12))
    medium = int(rng.poisson(1.0))
    regressed = bool(rng.random() < 0.05)
    load_errors = bool(rng.random() < 0.03)
    coverage = float(np.clip(rng.normal(repo.coverage_mean, 0.04), 0.2, 0.99))
    experience = int(rng.geometric(0.05))
    weekend = when.weekday() >= 5
    z = (repo.propensity + 0.45 * max(0.0, math.log2(lines / 200)) + 0.9 * migration + 2.2 * (failing > 0)
         + 1.4 * other_check_failed + min(2.0, 0.7 * critical + 0.15 * high) + 1.2 * regressed + 0.8 * load_errors
         + 0.4 * (coverage < 0.6) + 0.3 * (experience < 5) + 0.3 * weekend)  # fmt: skip
    p = expit(z)
    facts = {"lines": lines, "files": files, "migration": migration, "failing": failing,
             "other_check_failed": other_check_failed, "critical": critical, "high": high, "medium": medium,
             "regressed": regressed, "load_errors": load_errors, "coverage": coverage, "experience": experience}  # fmt: skip
    return Deployment(repo, index, when, facts, p, bool(rng.random() < p))


def schedule(fleet: list[Repo], months: int, rng: np.random.Generator) -> list[Deployment]:
    end = _month_start(months)
    out = []
    for repo in fleet:
        t, i = START, 0
        while True:
            t += timedelta(days=float(rng.exponential(7.0 / repo.per_week)))
            if t >= end:
                break
            t = t.replace(hour=int(rng.integers(8, 19)), minute=int(rng.integers(0, 60)))
            out.append(_deployment(repo, i, t, rng))
            i += 1
    out.sort(key=lambda d: d.created_at)
    return out


def checks_of(d: Deployment) -> list[dict[str, Any]]:
    f, tests = d.facts, d.repo.tests
    runs = [("build", "success"), ("lint", "failure" if f["other_check_failed"] else "success")]
    if tests in ("reports", "check"):  # the test job fails when tests fail, whether or not it uploads a report
        runs.append(("test", "failure" if f["failing"] else "success"))
    return [{"name": n, "status": "completed", "conclusion": c} for n, c in runs]


def evidence_of(d: Deployment) -> Evidence:
    """The evidence the app would collect for this deployment (only what the repository produces)."""
    repo, f = d.repo, d.facts
    missing = {"availability": "not_configured", "reason": "not produced by this repository"}
    tests: dict[str, Any] = missing
    if repo.tests == "reports":
        total = 200 + 10 * d.index % 50
        tests = {"availability": "ok", "reason": "junit", "total": total, "passed": total - f["failing"],
                 "failed": f["failing"], "files": 1,
                 "failures": [{"name": f"test_{k}", "file": "tests/test_app.py", "line": 10 + k} for k in range(f["failing"])]}  # fmt: skip
    ops = _operational(d)
    data = {
        "deployment_id": f"{repo.name}#{d.index}", "repository": repo.name, "environment": ENV,
        "sha": f"{d.index:040x}", "created_at": d.created_at,
        "checks": {"availability": "ok", "reason": "read", "checks": checks_of(d)},
        "tests": tests,
        "coverage": {"availability": "ok", "reason": "cobertura", "line_rate": f["coverage"]} if repo.coverage else missing,
        "security": ({"availability": "ok", "reason": "read", "sources": {"dependabot": "ok"},
                      "counts": {k: v for k, v in (("critical", f["critical"]), ("high", f["high"]),
                                                   ("medium", f["medium"])) if v}} if repo.scanning else missing),
        "performance": ({"availability": "ok", "reason": "jmeter", "tool": "jmeter", "overall": {
            "name": "Total", "samples": 5000, "p95_ms": 300.0 * (1.35 if f["regressed"] else 1.0), "p99_ms": 600.0,
            "error_rate": 0.03 if f["load_errors"] else 0.001, "baseline_p95_ms": 300.0,
            "regression_pct": 35.0 if f["regressed"] else 1.0, "significant": bool(f["regressed"])}}
            if repo.load_tests else missing),
        "change": {"availability": "ok", "reason": "compare", "commits": max(1, f["files"] // 2),
                   "files_changed": f["files"], "additions": int(f["lines"] * 0.7), "deletions": f["lines"] - int(f["lines"] * 0.7),
                   "subsystems": min(f["files"], 1 + f["files"] // 8), "entropy": 0.6, "authors": 1,
                   "author_experience": f["experience"], "has_migration": f["migration"]},
        "operational": ops,
    }  # fmt: skip
    return Evidence.model_validate(data)


def _operational(d: Deployment) -> dict[str, Any]:
    """What gonogo's own history says about the environment (built from what was really deployed)."""
    now, past = d.created_at, d.repo.deployed
    if not past:
        return {"availability": "ok", "reason": "no earlier deployments recorded", "deploys_last_24h": 0,
                "hour_utc": now.hour, "weekday": now.weekday()}  # fmt: skip
    recent = [failed for when, failed in past if when >= now - timedelta(days=30)]
    return {"availability": "ok", "reason": "from gonogo's deployment history",
            "hours_since_last_deploy": round((now - past[-1][0]).total_seconds() / 3600, 2),
            "deploys_last_24h": sum(1 for when, _ in past if when >= now - timedelta(hours=24)),
            "env_failure_rate_30d": (sum(recent) / len(recent)) if recent else None,
            "hour_utc": now.hour, "weekday": now.weekday()}  # fmt: skip


@dataclass
class Month:
    n: int = 0
    auto: int = 0
    escaped: int = 0
    false_blocks: int = 0
    failures: int = 0
    naive_escaped: int = 0
    naive_false_blocks: int = 0
    learned: int = 0  # decisions where a rule was relaxed by the repository's own outcomes
    verdicts: dict[str, int] = field(default_factory=lambda: {"go": 0, "escalate": 0, "no-go": 0})
    escalated_by: dict[str, int] = field(default_factory=dict)  # what stood between an escalation and a go

    def count(self, verdict: str, would_fail: bool) -> None:
        """Count one decided deployment: its verdict, and whether it escaped or was a false block."""
        self.n += 1
        self.failures += would_fail
        self.verdicts[verdict] += 1
        self.auto += verdict != "escalate"
        self.escaped += verdict == "go" and would_fail
        self.false_blocks += verdict != "go" and not would_fail

    def as_dict(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {
            "deployments": self.n, "failures": self.failures, "verdicts": dict(self.verdicts),
            "auto": self.auto, "auto_share": round(self.auto / n, 4), "escaped": self.escaped, "false_blocks": self.false_blocks,
            "false_block_rate": round(self.false_blocks / n, 4), "naive_escaped": self.naive_escaped,
            "naive_false_blocks": self.naive_false_blocks, "learned": self.learned, "naive_false_block_rate": round(self.naive_false_blocks / n, 4),
            "escalated_by": dict(sorted(self.escalated_by.items(), key=lambda kv: -kv[1])),
        }  # fmt: skip


def _month_of(when: datetime) -> int:
    return (when.year - START.year) * 12 + when.month - START.month


def policy_for(max_risk: float | None) -> Policy:
    """The default pack, or the default pack with ``production``'s approve.max_risk set as a repository would set it."""
    if max_risk is None:
        return default_policy()
    return load_policy_text(f"environments:\n  {ENV}:\n    approve: {{max_risk: {max_risk}}}\n", "--max-risk")


def run(repos: int, months: int, seed: int, model_params: dict[str, Any] | None,
        max_risk: float | None = None) -> dict[str, Any]:  # fmt: skip
    policy = policy_for(max_risk)
    with tempfile.TemporaryDirectory(prefix="gonogo-gate-quality-") as tmp:
        registry = db.make_engine(f"sqlite:///{tmp}/registry.db")
        try:
            db.upgrade(registry)
            return _run(repos, months, seed, model_params, registry, policy)
        finally:
            registry.dispose()


def _run(repos: int, months: int, seed: int, model_params: dict[str, Any] | None, registry: Engine,
         policy: Policy) -> dict[str, Any]:  # fmt: skip
    """The replay; each month's challenger goes through the app's model registry in ``registry``."""
    rng = np.random.default_rng(seed)
    fleet = make_fleet(repos, rng)
    deployments = schedule(fleet, months, rng)
    prior = load_prior()
    history: list[dict[str, Any]] = []
    model: TrainedRiskModel | None = None
    stats: dict[int, Month] = {}
    timings = {"decide_s": 0.0, "train_s": 0.0, "features_s": 0.0}
    trained_for = -1
    trainings, promoted = 0, 0  # monthly challengers trained, and those that became the model in use
    models: list[TrainedRiskModel | None] = []  # the model in use during each month
    weeks: list[tuple[int, list[Deployment], int]] = []  # (month, its deployments, history rows before it)
    i = 0
    while i < len(deployments):
        month = _month_of(deployments[i].created_at)
        if month != trained_for:
            trained_for = month
            if any(r["outcome"] for r in history):  # retrain on every outcome so far, as `gonogo model retrain` would
                t0 = time.perf_counter()
                frame = coerce_history(pd.DataFrame.from_records(history, columns=list(HISTORY_COLUMNS)))
                challenger = train_model(frame, prior=prior, random_state=seed, params=model_params)
                trainings += 1
                if register(registry, challenger, None, history=frame).active:  # the app's champion/challenger rule
                    model = challenger
                    promoted += 1
                timings["train_s"] += time.perf_counter() - t0
            models.append(model)
        week_end = deployments[i].created_at + timedelta(days=7)
        week: list[Deployment] = []
        while (i < len(deployments) and deployments[i].created_at < week_end
               and _month_of(deployments[i].created_at) == month):  # fmt: skip
            week.append(deployments[i])
            i += 1
        weeks.append((month, week, len(history)))
        risks = _model_risks(model, history, week, timings) if model is not None else {}
        _replay(week, policy, risks, history, stats.setdefault(month, Month()), timings)
    per_month = [stats[m].as_dict() | {"month": m + 1} for m in sorted(stats)]
    last = max(stats)
    curve = learning_curve([(w, mark) for m, w, mark in weeks if m == last], models, history, policy, timings)
    naive = sum(m["naive_escaped"] for m in per_month)
    bounds = {"evidence": oracle_bound(deployments, naive, vulnerabilities=False),
              "evidence_and_vulnerabilities": oracle_bound(deployments, naive, vulnerabilities=True)}
    return {"repos": repos, "months": months, "deployments": len(deployments), "per_month": per_month,
            "approve_max_risk": effective(policy, ENV).approve.max_risk,
            "learning_curve": curve, "oracle": bounds, "models_promoted": f"{promoted} of {trainings}",
            "timings": {k: round(v, 1) for k, v in timings.items()}}  # fmt: skip



def oracle_bound(deployments: list[Deployment], naive_escaped: int, *, vulnerabilities: bool) -> dict[str, Any]:
    """The best any gate could do on this fleet with gonogo's safety floor: an upper bound for the targets.

    The oracle knows what no gate can: every deployment's true probability of failure, from the first day,
    and, in hindsight, the highest threshold on it that keeps the year's escaped failures within half the
    naive gate's. It approves every deployment under that threshold, except that it keeps gonogo's floor:
    it rejects what gonogo rejected (a failed blocker or a very high risk), and escalates what gonogo
    escalated because evidence was missing or unreadable; with ``vulnerabilities`` also what an open high
    or critical security finding escalated (a deployment outcome says nothing about a breach). Its
    knowledge never changes, so its month-to-month false-block rate moves only with what is deployed.
    """
    floor = [d for d in deployments if d.verdict == "no-go" or d.unread or (vulnerabilities and d.vulnerable)]
    held = {id(d) for d in floor}
    free = sorted((d for d in deployments if id(d) not in held), key=lambda d: d.p_fail)
    budget, escaped, approved = naive_escaped // 2, 0, 0
    for d in free:  # the longest prefix, in order of true risk, within the budget of escaped failures
        if escaped + d.would_fail > budget:
            break
        escaped += d.would_fail
        approved += 1
    threshold = free[approved].p_fail if approved < len(free) else 1.0
    go = {id(d) for d in free[:approved]}
    stats: dict[int, Month] = {}
    for d in deployments:
        m = stats.setdefault(_month_of(d.created_at), Month())
        m.count("go" if id(d) in go else ("no-go" if d.verdict == "no-go" else "escalate"), d.would_fail)
    per_month = [stats[k].as_dict() | {"month": k + 1} for k in sorted(stats)]
    rates = [m["false_block_rate"] for m in per_month]
    return {
        "threshold": threshold, "escaped": escaped, "budget": budget,
        "held_by_floor_after_month_1": sum(1 for d in floor if _month_of(d.created_at) > 0),
        "auto_share_after_month_1": round(_auto_after_month_1(per_month), 4),
        "false_block_rates": rates, "months_false_blocks_fell_or_held": _fell_or_held(rates),
    }  # fmt: skip


def _auto_after_month_1(per_month: list[dict[str, Any]]) -> float:
    """The share decided automatically over every month but the first."""
    after = per_month[1:]
    return sum(m["auto"] for m in after) / (sum(m["deployments"] for m in after) or 1)  # counts, not rounded shares


def _fell_or_held(rates: list[float]) -> str:
    return f"{sum(b <= a for a, b in itertools.pairwise(rates))} of {len(rates) - 1}"


def _month_start(month: int) -> datetime:
    return datetime(START.year + (START.month - 1 + month) // 12, (START.month - 1 + month) % 12 + 1, 1, tzinfo=UTC)


def learning_curve(probe: list[tuple[list[Deployment], int]], models: list[TrainedRiskModel | None],
                   history: list[dict[str, Any]], policy: Any, timings: dict[str, float]) -> list[dict[str, Any]]:  # fmt: skip
    """Decide the last month's deployments again with what gonogo knew at the start of each month.

    The traffic is fixed (the same deployments, with the evidence they had), only the knowledge changes:
    the risk model in use that month and the outcome record up to its first day. So the curve shows what
    learning alone does, without the month-to-month changes in what is deployed. Every model and record
    predates the probe month, whose outcomes none of them has seen.
    """
    learning = effective(policy, ENV).learning
    out = []
    for k, model in enumerate(models):
        cutoff = _month_start(k)
        since = cutoff - learning.window  # the outcome record as it stood on the first day of month k + 1
        m = Month()
        for week, mark in probe:
            risks = _model_risks(model, history[:mark], week, timings) if model is not None else {}
            for d in week:
                assert d.evidence is not None
                track = tally((p for when, p in d.repo.past if since <= when < cutoff), learning.rules)
                decision = evaluate(d.evidence, policy, ENV, d.created_at, risk=risks.get(id(d)), track=track)
                m.count(decision.verdict, d.would_fail)
                m.learned += any(f.learned for f in decision.findings)
        row = m.as_dict()
        out.append({"knowledge_of_month": k + 1, "deployments": row["deployments"], "auto_share": row["auto_share"],
                    "escaped": row["escaped"], "false_blocks": row["false_blocks"],
                    "false_block_rate": row["false_block_rate"], "learned": row["learned"]})  # fmt: skip
    return out


def _replay(rows: list[Deployment], policy: Any, risks: dict[int, RiskEstimate], history: list[dict[str, Any]],
            stats: Month, timings: dict[str, float]) -> None:  # fmt: skip
    """Decide each deployment in time order and record what the app would learn from it."""
    learning = effective(policy, ENV).learning
    for d in rows:
        ev = d.evidence = evidence_of(d)
        t0 = time.perf_counter()
        since = d.created_at - learning.window
        track = tally((p for when, p in d.repo.past if when >= since), learning.rules)  # as github_app.learning reads it
        decision = evaluate(ev, policy, ENV, d.created_at, risk=risks.get(id(d)), track=track)
        timings["decide_s"] += time.perf_counter() - t0
        verdict = d.verdict = decision.verdict
        d.unread = any(change.kind in ("confidence", "evidence") for change in decision.what_would_change)
        d.vulnerable = any(f.status == "failed" and f.severity == "major" and f.rule_id.startswith("GNG-SEC-")
                           for f in decision.findings)  # fmt: skip
        green = all(c.passed for c in ev.checks.checks)
        stats.count(verdict, d.would_fail)
        if verdict == "escalate":
            for change in decision.what_would_change:
                keys = change.rule_ids if change.kind == "fix_findings" else [change.kind]
                for key in keys:
                    stats.escalated_by[key] = stats.escalated_by.get(key, 0) + 1
        stats.naive_escaped += green and d.would_fail
        stats.naive_false_blocks += (not green) and not d.would_fail
        stats.learned += any(f.learned for f in decision.findings)
        deployed = verdict == "go" or (verdict == "escalate" and _reviewer_approves(d))
        row = ev.to_history_row()
        outcome = ("failure" if d.would_fail else "success") if deployed else None
        if deployed:
            row["outcome"] = outcome
            d.repo.deployed.append((d.created_at, d.would_fail))
        history.append(row)
        answer = "approved" if deployed else "rejected"
        # each deployment is its own commit; the app counts one per commit and per day (github_app/learning.py)
        d.repo.past.append((d.created_at, PastDeployment(tuple(decision.major_findings), verdict == "escalate", answer,
                                                         outcome, f"{d.repo.name}#{d.index}", d.created_at.date())))


def _reviewer_approves(d: Deployment) -> bool:
    # a stable pseudo-random draw per deployment (Python's str hash changes between runs)
    key = sum(ord(c) * (k + 1) for k, c in enumerate(d.repo.name)) * 7919 + d.index * 104729
    return (key % 1000) / 1000 < REVIEWER_APPROVES


def _model_risks(model: TrainedRiskModel, history: list[dict[str, Any]], week: list[Deployment],
                 timings: dict[str, float]) -> dict[int, RiskEstimate]:  # fmt: skip
    """Predict like RiskProvider, once for the week: features from each repository's latest history rows.

    Building the features once a week instead of once a deployment keeps the run within minutes; the
    history features then lag by up to a week, while the rules still see the live history.
    """
    t0 = time.perf_counter()
    names = {d.repo.name for d in week}
    context: dict[str, list[dict[str, Any]]] = {}
    for r in reversed(history):
        rows = context.setdefault(r["repository"], [])
        if r["repository"] in names and len(rows) < 60:
            rows.append(r)
    earlier = [r for name in names for r in reversed(context.get(name, []))]
    for d in week:
        if d.risk_row is None:
            d.risk_row = evidence_of(d).to_history_row()
    new = [d.risk_row for d in week]
    frame = coerce_history(pd.DataFrame.from_records([*earlier, *new], columns=list(HISTORY_COLUMNS)))
    features = build_features(frame).iloc[len(earlier):]
    probabilities = model.predict_risk(features)
    timings["features_s"] += time.perf_counter() - t0
    return {id(d): RiskEstimate(probability=round(float(p), 4), source="model", model_version=model.version)
            for d, p in zip(week, probabilities, strict=True)}  # fmt: skip


# --- output -------------------------------------------------------------------------------------


def summary(result: dict[str, Any]) -> dict[str, Any]:
    auto = _auto_after_month_1(result["per_month"])
    escaped = sum(m["escaped"] for m in result["per_month"])
    naive = sum(m["naive_escaped"] for m in result["per_month"])
    rates = [m["false_block_rate"] for m in result["per_month"]]
    curve = [c["false_block_rate"] for c in result["learning_curve"]]
    curve_falling = sum(b <= a for a, b in itertools.pairwise(curve))
    return {
        "auto_share_after_month_1": round(auto, 4), "escaped": escaped, "naive_escaped": naive,
        "escaped_ratio": round(escaped / naive, 3) if naive else None,
        "false_block_rate_first": rates[0], "false_block_rate_last": rates[-1],
        "months_false_blocks_fell_or_held": _fell_or_held(rates),
        "learning_curve_false_block_rate": [curve[0], curve[-1]],
        "learning_curve_steps_fell_or_held": _fell_or_held(curve),
        "oracle_auto_share_after_month_1": {k: b["auto_share_after_month_1"] for k, b in result["oracle"].items()},
        "oracle_months_false_blocks_fell_or_held": {k: b["months_false_blocks_fell_or_held"]
                                                    for k, b in result["oracle"].items()},
        "targets": {"auto_share_after_month_1 >= 0.8": auto >= 0.8,
                    "escaped <= half of naive": naive > 0 and escaped <= naive / 2,
                    "false-block rate lower at the end than in month 1": rates[-1] < rates[0],
                    "fixed traffic: false-block rate never rises as knowledge grows":
                        len(curve) > 1 and curve_falling == len(curve) - 1},
    }  # fmt: skip


def svg(result: dict[str, Any]) -> str:
    """Draw the month-by-month curves: share decided automatically, escaped failures and false blocks per 100."""
    months = [m["month"] for m in result["per_month"]]
    series = [
        ("gonogo: decided automatically (%)", [100 * m["auto_share"] for m in result["per_month"]], "#1f77b4", ""),
        ("gonogo: false blocks per 100 deployments", [100 * m["false_block_rate"] for m in result["per_month"]], "#d62728", ""),
        ("naive gate: false blocks per 100", [100 * m["naive_false_block_rate"] for m in result["per_month"]], "#d62728", "6 4"),
        ("gonogo: escaped failures per 100", [100 * m["escaped"] / max(m["deployments"], 1) for m in result["per_month"]], "#2ca02c", ""),
        ("naive gate: escaped failures per 100", [100 * m["naive_escaped"] / max(m["deployments"], 1) for m in result["per_month"]], "#2ca02c", "6 4"),
        (f"false blocks per 100, month {months[-1]} decided", [100 * c["false_block_rate"] for c in result["learning_curve"]], "#9467bd", "2 3"),
        ("  with what was known at month x", None, "", ""),
        ("best possible gate: false blocks per 100", [100 * r for r in result["oracle"]["evidence_and_vulnerabilities"]["false_block_rates"]], "#7f7f7f", "1 3"),
        ("  (knows every true risk, gonogo's floor)", None, "", ""),
    ]  # fmt: skip
    w, h, left, right, top, bottom = 790, 420, 60, 280, 40, 50
    pw, ph = w - left - right, h - top - bottom
    x = lambda i: left + (pw * (i - 1) / max(len(months) - 1, 1))
    y = lambda v: top + ph * (1 - v / 100)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           (f'<text x="{left}" y="22" font-size="14">gonogo on a simulated fleet of {result["repos"]} repositories '
            f'({result["deployments"]:,} deployments)</text>')]  # fmt: skip
    for v in range(0, 101, 20):
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    for i in months:
        out.append(f'<text x="{x(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{i}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 10}" text-anchor="middle">month</text>')
    for k, (label, values, colour, dash) in enumerate(series):
        ly = top + 10 + 22 * k
        if values is None:  # the second line of the label above
            out.append(f'<text x="{left + pw + 45}" y="{ly - 6}">{label.strip()}</text>')
            continue
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in zip(months, values, strict=True))
        style = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{style}/>')
        out.append(f'<line x1="{left + pw + 15}" y1="{ly}" x2="{left + pw + 40}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{style}/>')  # fmt: skip
        out.append(f'<text x="{left + pw + 45}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="50 repositories for 4 months")
    parser.add_argument("--svg", type=Path, default=None, help="write the month-by-month curve here")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--also-seeds", default="", metavar="1,2,...",
                        help="then replay fleets drawn with these seeds too and print a line of targets for each")
    parser.add_argument("--linear", action="store_true",
                        help="keep the risk model to its linear form (about twice as fast; the app lets it choose "
                             "boosting from 600 outcomes, as the default run does)")
    parser.add_argument("--max-risk", type=float, default=None, metavar="P",
                        help="production's approve.max_risk (default: the default pack's, 0.15): what a lower or "
                             "higher line trades between deployments decided alone and failures let through")
    args = parser.parse_args()
    try:
        policy_for(args.max_risk)
    except PolicyError as exc:
        parser.error(str(exc))
    months = 4 if args.quick else args.months
    params = {"min_samples_boosting": 10**9} if args.linear else None
    t0 = time.perf_counter()
    result = run(args.repos, months, args.seed, params, args.max_risk)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["summary"] = summary(result)
    print(f"{result['repos']} repositories, {result['months']} months, approve.max_risk {result['approve_max_risk']:.0%},  {result['deployments']:,} deployments, "
          f"{result['seconds']} s (decisions {result['timings']['decide_s']} s, training {result['timings']['train_s']} s, "
          f"model features {result['timings']['features_s']} s)")  # fmt: skip
    print(f"{'month':>5} {'deploys':>7} {'fail':>5} {'auto':>6} {'go':>5} {'esc':>5} {'no-go':>5} "
          f"{'escaped':>7} {'naive':>5} {'false-block':>11} {'naive':>6} {'learned':>7}")  # fmt: skip
    for m in result["per_month"]:
        v = m["verdicts"]
        print(f"{m['month']:>5} {m['deployments']:>7} {m['failures']:>5} {m['auto_share']:>6.1%} {v['go']:>5} "
              f"{v['escalate']:>5} {v['no-go']:>5} {m['escaped']:>7} {m['naive_escaped']:>5} "
              f"{m['false_block_rate']:>11.1%} {m['naive_false_block_rate']:>6.1%} {m['learned']:>7}")  # fmt: skip
    causes: dict[str, int] = {}
    for m in result["per_month"]:
        for key, count in m["escalated_by"].items():
            causes[key] = causes.get(key, 0) + count
    print("what stood between escalations and a go:", ", ".join(f"{k} {v}" for k, v in sorted(causes.items(), key=lambda kv: -kv[1])))
    print(f"learning curve: month {result['months']}'s {result['learning_curve'][0]['deployments']} deployments "
          "decided again with what gonogo knew at the start of each month")
    print(f"{'knowledge':>9} {'auto':>6} {'escaped':>7} {'false-block':>11} {'learned':>7}")
    for c in result["learning_curve"]:
        print(f"{c['knowledge_of_month']:>9} {c['auto_share']:>6.1%} {c['escaped']:>7} {c['false_block_rate']:>11.1%} "
              f"{c['learned']:>7}")  # fmt: skip
    for key, label in (("evidence", "missing evidence escalates"),
                       ("evidence_and_vulnerabilities", "missing evidence and open high findings escalate")):
        b = result["oracle"][key]
        print(f"best possible gate ({label}; knows every true risk, approves under {b['threshold']:.1%}): "
              f"{b['auto_share_after_month_1']:.1%} decided automatically after month 1, {b['escaped']} escaped "
              f"(budget {b['budget']}), false blocks by month "
              + " ".join(f"{100 * r:.1f}" for r in b["false_block_rates"])
              + f" (fell or held {b['months_false_blocks_fell_or_held']})")  # fmt: skip
    print(json.dumps(result["summary"], indent=2))
    if args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(result), encoding="utf-8")
    others = [int(x) for x in args.also_seeds.split(",") if x.strip()]
    if others:
        result["other_seeds"] = seed_table([args.seed, *others], result, args.repos, months, params, args.max_risk)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


def seed_table(seeds: list[int], first: dict[str, Any], repos: int, months: int,
               params: dict[str, Any] | None, max_risk: float | None = None) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Replay fleets drawn with other seeds and print, for each, where it stands against the targets."""
    out = {seeds[0]: first["summary"]}
    for k, seed in enumerate(seeds[1:], 1):
        print(f"replaying the fleet of seed {seed} ({k} of {len(seeds) - 1}) ...", file=sys.stderr, flush=True)
        result = run(repos, months, seed, params, max_risk)
        out[seed] = summary(result)
    print(f"{'seed':>4} {'auto':>6} {'escaped / naive':>15} {'best gate: evidence':>19} {'+ vulns':>7} "
          f"{'fell/held live':>14} {'fixed traffic':>13} {'best gate':>9}")  # fmt: skip
    for seed, s in out.items():
        oracle = s["oracle_auto_share_after_month_1"]
        print(f"{seed:>4} {s['auto_share_after_month_1']:>6.1%} {s['escaped']:>7} / {s['naive_escaped']:<5} "
              f"{oracle['evidence']:>19.1%} {oracle['evidence_and_vulnerabilities']:>7.1%} "
              f"{s['months_false_blocks_fell_or_held']:>14} {s['learning_curve_steps_fell_or_held']:>13} "
              f"{s['oracle_months_false_blocks_fell_or_held']['evidence']:>9}")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
