"""Seed a database with deployments, decisions, reviews, outcomes and history for the insights.

Deterministic for a given seed. Shared by the insights tests, the browser tests and
benchmarks/insights_pages.py (which seeds 100,000 deployments).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, text

from github_app.db.models import AuditEntry, DecisionRecord, Deployment, HistoryRow, Outcome, Review

REPOSITORIES = ("acme/shop", "acme/payments", "acme/search")
ENVIRONMENTS = ("production", "staging")


@dataclass(frozen=True)
class Seeded:
    deployments: int
    first_key: str
    escalated_waiting: int


def template_decision(verdict: str, repository: str, environment: str, sha: str, created_at: datetime) -> dict[str, Any]:
    """A real decision of the rules engine on thin evidence, its verdict and action set to ``verdict``."""
    from rules.pipeline import evaluate
    from rules.policy import default_policy
    from scorer.evidence import Evidence

    evidence = Evidence(deployment_id=f"{repository}/1/{environment}/1", repository=repository,
                        environment=environment, sha=sha, created_at=created_at)  # fmt: skip
    decision = evaluate(evidence, default_policy(), environment, created_at)
    action = {"go": "approve", "escalate": "escalate", "no-go": "reject"}[verdict]
    return decision.model_copy(update={"verdict": verdict, "action": action}).model_dump(mode="json")


def _sha(rng: random.Random) -> str:
    return hashlib.sha1(rng.randbytes(16)).hexdigest()


def seed(
    engine: Engine, *, deployments: int, now: datetime | None = None, days: int = 120, seed_value: int = 7,
    batch: int = 5000, with_audit: bool = True, full_decision_every: int = 1,
) -> Seeded:
    """Insert ``deployments`` deployments spread over ``days`` days before ``now``, with what followed each.

    Every ``full_decision_every``-th deployment stores the whole decision (about 30 kB of JSON with its
    evidence); the others only its headline fields, which is all the lists read.
    """
    rng = random.Random(seed_value)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    templates = {v: template_decision(v, REPOSITORIES[0], ENVIRONMENTS[0], "0" * 40, start)
                 for v in ("go", "escalate", "no-go")}  # fmt: skip
    with engine.connect() as conn:
        base_id = (conn.execute(select(Deployment.id).order_by(Deployment.id.desc()).limit(1)).scalar() or 0) + 1
    step = timedelta(days=days) / max(deployments, 1)
    rows: dict[str, list[dict[str, Any]]] = {"deployments": [], "decisions": [], "reviews": [], "outcomes": [],
                                             "history": [], "audit": []}  # fmt: skip
    first_key = ""
    waiting = 0
    outcome_n = 0
    for i in range(deployments):
        dep_id = base_id + i
        repo = REPOSITORIES[i % len(REPOSITORIES)]
        env = ENVIRONMENTS[(i // len(REPOSITORIES)) % len(ENVIRONMENTS)]
        created = start + step * i + timedelta(seconds=rng.randint(0, 59))
        sha = _sha(rng)
        risk = min(0.99, max(0.01, rng.betavariate(2, 6)))
        verdict = "go" if risk < 0.3 else ("escalate" if risk < 0.55 else "no-go")
        action = {"go": "approve", "escalate": "escalate", "no-go": "reject"}[verdict]
        key = f"{repo}/{1000 + dep_id}/{env}/1"
        first_key = first_key or key
        decided = created + timedelta(seconds=rng.uniform(2, 40))
        answer: str | None
        answered_at: datetime | None
        if verdict == "go":
            answer, answered_at = "approved", decided
        elif verdict == "no-go":
            answer, answered_at = "rejected", decided
        elif now - created < timedelta(hours=6) and rng.random() < 0.5:
            answer, answered_at = None, None
            waiting += 1
        else:
            answer = "approved" if rng.random() < 0.8 else "rejected"
            answered_at = decided + timedelta(seconds=rng.expovariate(1 / 3600))
            rows["reviews"].append({"deployment_id": dep_id, "actor": rng.choice(["rita", "dora", "sam"]),
                                    "action": "approve" if answer == "approved" else "reject", "allowed": True,
                                    "reason": "looked at the change", "created_at": answered_at})  # fmt: skip
        state = "escalated" if answer is None else "answered"
        first_commit = created - timedelta(hours=rng.uniform(0.5, 96))
        data = dict(templates[verdict], sha=sha, repository=repo, environment=env, deployment_id=key,
                    risk={**templates[verdict]["risk"], "probability": risk})  # fmt: skip
        if i % full_decision_every:
            data = {k: data[k] for k in ("verdict", "action", "reviewers", "strategy", "risk")}
        rows["deployments"].append({
            "id": dep_id, "key": key, "repository": repo, "environment": env, "sha": sha, "ref": "refs/heads/main",
            "run_id": 1000 + dep_id, "creator": "octocat", "pull_requests": [], "created_at": created, "state": state,
            "answer": answer, "answered_at": answered_at, "decision_id": dep_id, "status_reports": 0,
            # the decision's headline, the human review and the first commit, as the transitions keep them
            "verdict": verdict, "decided_action": action, "risk": risk, "decided_at": decided,
            "human_reviewed": verdict == "escalate" and answer is not None, "first_commit_at": first_commit,
        })  # fmt: skip
        rows["decisions"].append({"id": dep_id, "deployment_id": dep_id, "created_at": decided, "verdict": verdict,
                                  "action": action, "readiness_score": round(100 - risk * 100, 1), "risk": risk,
                                  "confidence": 0.8, "data": data})  # fmt: skip
        rows["history"].append({"deployment_id": key, "repository": repo, "environment": env, "sha": sha,
                                "created_at": created, "features": {"commits": rng.randint(1, 30),
                                                                    "first_commit_at": first_commit.isoformat()}})  # fmt: skip
        if answer == "approved":
            went_at = (answered_at or decided) + timedelta(minutes=rng.uniform(2, 15))
            failed = rng.random() < risk
            outcome_n += 1
            rows["outcomes"].append({"repository": repo, "environment": env, "sha": sha,
                                     "outcome": "failure" if failed and rng.random() < 0.5 else "success",
                                     "source": "deployment_status", "source_key": f"seed:{dep_id}:status",
                                     "observed_at": went_at, "detail": {}})  # fmt: skip
            if failed:
                rows["outcomes"].append({"repository": repo, "environment": env, "sha": sha, "outcome": "incident",
                                         "source": "alert", "source_key": f"seed:{dep_id}:alert",
                                         "observed_at": went_at + timedelta(minutes=rng.uniform(5, 120)),
                                         "detail": {"alertname": "HighErrorRate"}})  # fmt: skip
        elif answer == "rejected" and rng.random() < 0.3:
            # the same sha deployed again later, unchanged, and fine: a block that was not needed
            again = created + timedelta(hours=rng.uniform(1, 12))
            if again < now:
                rows["outcomes"].append({"repository": repo, "environment": env, "sha": sha, "outcome": "success",
                                         "source": "deployment_status", "source_key": f"seed:{dep_id}:again",
                                         "observed_at": again, "detail": {}})  # fmt: skip
        if with_audit:
            rows["audit"].append({"kind": "decision", "repository": repo, "deployment_key": key, "actor": "gonogo",
                                  "created_at": decided, "data": {"verdict": verdict, "action": action}})  # fmt: skip
        if len(rows["deployments"]) >= batch:
            _flush(engine, rows)
    _flush(engine, rows)
    return Seeded(deployments=deployments, first_key=first_key, escalated_waiting=waiting)


def _flush(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        if rows["deployments"]:
            conn.execute(insert(Deployment), rows["deployments"])
            conn.execute(insert(DecisionRecord), rows["decisions"])
        if rows["reviews"]:
            conn.execute(insert(Review), rows["reviews"])
        if rows["outcomes"]:
            conn.execute(insert(Outcome), rows["outcomes"])
        if rows["history"]:
            conn.execute(insert(HistoryRow), rows["history"])
        if rows["audit"]:
            last = conn.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)).scalar() or 0
            # not hash-chained: `gonogo audit verify` would flag these, they only feed the pages
            conn.execute(insert(AuditEntry), [
                {**a, "seq": last + n + 1, "prev_hash": "0" * 64, "hash": hashlib.sha256(str(last + n).encode()).hexdigest()}
                for n, a in enumerate(rows["audit"])
            ])  # fmt: skip
    for v in rows.values():
        v.clear()
    if engine.dialect.name == "postgresql":  # explicit ids leave the sequences behind
        with engine.begin() as conn:
            for table in ("deployments", "decisions"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT coalesce(max(id), 1) FROM {table}))"))  # fmt: skip
