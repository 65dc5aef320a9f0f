"""Risk models in the database: register with champion/challenger, serve estimates, retrain on new outcomes.

Cold start (documented choice). The packaged prior was learnt from public defect-inducing commits,
whose base rate (about 21 %) is not a deployment failure rate: used raw it would put a small clean
change at ~45 % risk and escalate nearly everything. So the provider answers, in this order:
1. the repository's active trained model, once the repository has ``min_outcomes`` labelled outcomes
   (a model fitted on a handful of rows does not outrank the alternatives);
2. else a global active model (trained with ``gonogo model train`` / ``retrain`` without a repository);
3. else the prior re-centred on the repository's own failure rate (``BlendedRiskModel`` with no local
   model: its ranking of risky changes, the repository's smoothed base rate), ``source="prior"``, once
   there are ``min_outcomes`` labelled outcomes and the deployment has change evidence (the only
   features the prior knows);
4. else None: the gate keeps its transparent rule-based estimate.
``GONOGO_RISK_MIN_OUTCOMES`` (default 20) sets the threshold.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, case, func, or_, select, update
from sqlalchemy.orm import Session

from github_app.db import read_only
from github_app.db.models import HistoryRow, RiskModelRecord
from github_app.github import parse_time
from scorer.assessment import RiskEstimate
from scorer.evidence import FAILED_OUTCOMES, HISTORY_COLUMNS, Evidence
from scorer.risk.artifact import TrainedRiskModel, labelled_training_set, load_prior, train_model
from scorer.risk.blend import BlendedRiskModel
from scorer.risk.explain import risk_estimate
from scorer.risk.features import build_features
from scorer.risk.history import coerce_history
from scorer.risk.metrics import DECISION_LINE, evaluate, is_at_least_as_good
from scorer.risk.model import RiskModel

log = logging.getLogger(__name__)

CORE_COLUMNS = ("deployment_id", "repository", "environment", "sha", "created_at", "outcome", "outcome_at")
VALIDATION_FRACTION = 0.2  # RiskModel validates on its latest 20 % of rows; compare on the same rows
# Earlier deployments loaded to compute a new deployment's history features: the environment's
# last 30 days (capped) and latest rows (the last 20 labelled ones), the repository's latest rows
# (its median churn). Counts that reach further back are then taken exactly from SQL.
CONTEXT_ENV_ROWS = 60
CONTEXT_ENV_30D_CAP = 2000
CONTEXT_REPO_ROWS = 100
DEFAULT_RETRAIN_AFTER = 50
DEFAULT_MIN_OUTCOMES = 20


# ----------------------------------------------------------------------------------------- history

def _json_value(v: Any) -> Any:
    """Make a history cell JSON-safe: NaN/NA become None, numpy scalars become Python ones."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    return v


def history_features(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON ``features`` of a history row: every history column (docs/history.md) except the core ones."""
    return {c: _json_value(row.get(c)) for c in HISTORY_COLUMNS if c not in CORE_COLUMNS}


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat()


def rows_to_frame(rows: list[HistoryRow]) -> pd.DataFrame:
    """Turn stored history rows into a typed history frame (docs/history.md) (exact columns, time order)."""
    records = []
    for r in rows:
        rec: dict[str, Any] = {c: (r.features or {}).get(c) for c in HISTORY_COLUMNS}
        rec.update(deployment_id=r.deployment_id, repository=r.repository, environment=r.environment, sha=r.sha,
                   created_at=r.created_at.astimezone(UTC).isoformat(), outcome=r.outcome,
                   outcome_at=_iso(r.outcome_at))
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=list(HISTORY_COLUMNS))
    return coerce_history(frame)[list(HISTORY_COLUMNS)]


def load_history_frame(engine: Engine, repository: str | None = None, *, before: datetime | None = None,
                       limit: int | None = None) -> pd.DataFrame:
    """Read the history table (optionally one repository, rows before a time, the latest ``limit``)."""
    query = select(HistoryRow)
    if repository is not None:
        query = query.where(HistoryRow.repository == repository)
    if before is not None:
        query = query.where(HistoryRow.created_at < before)
    if limit is not None:
        query = query.order_by(HistoryRow.created_at.desc(), HistoryRow.id.desc()).limit(limit)
    else:
        query = query.order_by(HistoryRow.created_at, HistoryRow.id)
    with read_only(engine) as conn, Session(conn) as session:
        rows = list(session.scalars(query))
    rows.sort(key=lambda r: (r.created_at, r.id))
    return rows_to_frame(rows)


def labelled_count(engine: Engine, repository: str | None, since: datetime | None = None) -> int:
    """Count history rows with an outcome (for one repository or all), optionally labelled after ``since``."""
    query = select(func.count()).select_from(HistoryRow).where(HistoryRow.outcome.is_not(None))
    if repository is not None:
        query = query.where(HistoryRow.repository == repository)
    if since is not None:
        query = query.where(HistoryRow.outcome_at > since)
    with read_only(engine) as conn:
        return int(conn.execute(query).scalar() or 0)


def labelled_counts(engine: Engine | Connection, repository: str) -> tuple[int, int]:
    """Return (labelled outcomes, failures) of a repository's history."""
    if isinstance(engine, Engine):
        with read_only(engine) as conn:
            return labelled_counts(conn, repository)
    failed = HistoryRow.outcome.in_(sorted(FAILED_OUTCOMES))
    row = engine.execute(
        select(func.count(), func.coalesce(func.sum(case((failed, 1), else_=0)), 0))
        .where(HistoryRow.repository == repository, HistoryRow.outcome.is_not(None))
    ).one()  # fmt: skip
    return int(row[0] or 0), int(row[1] or 0)


# ---------------------------------------------------------------------------------------- registry

def _scope(query: Any, repository: str | None) -> Any:
    if repository is None:
        return query.where(RiskModelRecord.repository.is_(None))
    return query.where(RiskModelRecord.repository == repository)


def _window_time(value: Any) -> datetime | None:
    return parse_time(str(value)) if value else None


def _unique_version(session: Session, version: str) -> str:
    taken = set(session.scalars(select(RiskModelRecord.version).where(RiskModelRecord.version.like(f"{version}%"))))
    if version not in taken:
        return version
    n = 2
    while f"{version}-{n}" in taken:
        n += 1
    return f"{version}-{n}"


def champion_metrics_on(champion: TrainedRiskModel, history: pd.DataFrame) -> dict[str, Any] | None:
    """Score the champion on the latest 20 % of labelled rows (the challenger's validation rows)."""
    X, y, _ = labelled_training_set(history)
    cut = round(len(y) * (1.0 - VALIDATION_FRACTION))
    X_va, y_va = X.iloc[cut:], y[cut:]
    if len(y_va) == 0 or len(np.unique(y_va)) < 2:
        return None
    return evaluate(y_va, champion.predict_risk(X_va))


def _rounded(value: Any) -> Any:
    return round(value, 5) if isinstance(value, float) else value


def _unvalidated_challenger(meta: dict[str, Any], champion: RiskModelRecord) -> tuple[bool, str]:
    """Neither model held rows out (too few outcomes, or of one kind): the one that learnt from more wins.

    Re-scoring the champion on the newest rows would give it figures the challenger cannot have, so it
    would serve for good; a model fitted by the same recipe on every outcome the champion saw and more
    replaces it. Fewer outcomes, or a window that ends earlier, never does.
    """
    rows, before = int(meta.get("rows") or 0), int(champion.trained_rows or 0)
    end, champion_end = _window_time((meta.get("training_window") or {}).get("max_created_at")), champion.window_end
    if champion_end is not None and champion_end.tzinfo is None:
        champion_end = champion_end.replace(tzinfo=UTC)
    later = champion_end is None or (end is not None and end >= champion_end)
    if rows > before and later:
        return True, (f"neither model had enough outcomes to be validated on held-out rows; it learnt from more "
                      f"outcomes than champion {champion.version} ({rows} vs {before})")  # fmt: skip
    return False, (f"neither model had enough outcomes to be validated on held-out rows, and it learnt from "
                   f"{'fewer' if rows <= before else 'older'} outcomes than champion {champion.version} "
                   f"({rows} vs {before})")  # fmt: skip


def register(engine: Engine, trained: TrainedRiskModel, repository: str | None = None,
             activate_if_better: bool = True, *, history: pd.DataFrame | None = None) -> RiskModelRecord:
    """Store ``trained`` and make it active if it is the first of its scope or at least as good as the champion.

    With ``history`` (the training table), the champion is re-scored on the challenger's own time-ordered
    validation rows, which it may have seen in training (a bias in the champion's favour, so a challenger
    only wins clearly); without it the two models' stored validation metrics are compared.
    """
    meta = dict(trained.metadata)
    window = meta.get("training_window") or {}
    challenger_metrics = meta.get("metrics") or {}
    with Session(engine) as session, session.begin():
        version = _unique_version(session, trained.version)
        if version != trained.version:
            meta["version"] = version
            trained = TrainedRiskModel(estimator=trained.estimator, metadata=meta)
        champion = session.scalars(
            _scope(select(RiskModelRecord), repository).where(RiskModelRecord.active.is_(True))
            .order_by(RiskModelRecord.created_at.desc(), RiskModelRecord.id.desc()).limit(1)
        ).first()  # fmt: skip
        activate, reason = False, "not asked to activate"
        if activate_if_better:
            if champion is None:
                activate, reason = True, "first model of its scope"
            elif not challenger_metrics.get("roc_auc") and not ((champion.meta or {}).get("metrics") or {}).get("roc_auc"):
                activate, reason = _unvalidated_challenger(meta, champion)
                meta["champion"] = {"version": champion.version, "rows": champion.trained_rows, "metrics": {}}
            else:
                baseline: dict[str, Any] | None = None
                if history is not None:
                    try:
                        baseline = champion_metrics_on(TrainedRiskModel.from_bytes(champion.blob), history)
                    except (ValueError, TypeError, KeyError) as exc:  # an unreadable champion loses
                        log.warning("risk_registry.champion_unscorable", extra={"version": champion.version,
                                                                                 "error": str(exc)})
                        baseline = {}
                if baseline is None:
                    baseline = (champion.meta or {}).get("metrics") or {}
                activate = is_at_least_as_good(challenger_metrics, baseline)
                reason = (f"{'beats or matches' if activate else 'worse than'} champion {champion.version} "
                          f"(AUC {challenger_metrics.get('roc_auc')} vs {baseline.get('roc_auc')}, net benefit at "
                          f"{DECISION_LINE:.0%} {_rounded(challenger_metrics.get('net_benefit'))} vs "
                          f"{_rounded(baseline.get('net_benefit'))})")  # fmt: skip
                meta["champion"] = {"version": champion.version, "metrics": baseline}
        meta["registry"] = {"activated": activate, "reason": reason}
        if activate:
            session.execute(_scope(update(RiskModelRecord), repository).values(active=False))
        record = RiskModelRecord(
            repository=repository, version=version, created_at=datetime.now(UTC), active=activate,
            trained_rows=int(meta.get("rows") or 0), window_start=_window_time(window.get("min_created_at")),
            window_end=_window_time(window.get("max_created_at")),
            meta={"version": version, "training_window": window, "features": meta.get("features", []),
                  "libraries": meta.get("libraries", {}), "metrics": challenger_metrics, "kind": meta.get("kind"),
                  "calibration": meta.get("calibration"), "blend": meta.get("blend"),
                  "fallback_reason": meta.get("fallback_reason"), "rows": meta.get("rows"),
                  "failures": meta.get("failures"), "champion": meta.get("champion"), "registry": meta["registry"]},
            blob=trained.to_bytes(),
        )
        session.add(record)
        session.flush()
        session.expunge(record)
    log.info("risk_registry.registered", extra={"version": version, "repository": repository, "active": activate,
                                                "reason": reason})  # fmt: skip
    return record


def active_record(engine: Engine, repository: str | None) -> RiskModelRecord | None:
    """The active model serving ``repository``: its own if any, else the global one, else None."""
    with read_only(engine) as conn, Session(conn) as session:
        query = select(RiskModelRecord).where(RiskModelRecord.active.is_(True))
        if repository is None:
            query = query.where(RiskModelRecord.repository.is_(None))
        else:
            query = query.where(or_(RiskModelRecord.repository == repository, RiskModelRecord.repository.is_(None)))
        rows = list(session.scalars(query.order_by(RiskModelRecord.created_at.desc(), RiskModelRecord.id.desc())))
        for row in rows:
            session.expunge(row)
    own = [r for r in rows if r.repository is not None]
    return own[0] if own else (rows[0] if rows else None)


def active_model(engine: Engine, repository: str | None) -> TrainedRiskModel | None:
    """Load the active model for ``repository`` (repository-specific, else global); None means use the prior."""
    record = active_record(engine, repository)
    return TrainedRiskModel.from_bytes(record.blob) if record is not None else None


def retrain(engine: Engine, repository: str | None = None, *, prior: bool = True, random_state: int = 0,
            activate_if_better: bool = True) -> RiskModelRecord:
    """Train a challenger from the database history (one repository or all) and register it."""
    history = load_history_frame(engine, repository)
    if len(history) == 0:
        raise ValueError(f"no history rows{' for ' + repository if repository else ''} in the database; "
                         "import some with `gonogo history import` or `gonogo backfill`")
    trained = train_model(history, prior=load_prior() if prior else None, random_state=random_state)
    return register(engine, trained, repository, activate_if_better, history=history)


# ---------------------------------------------------------------------------------------- provider

class RiskProvider:
    """Estimates a deployment's risk with the active model (or the prior while outcomes are few)."""

    def __init__(self, engine: Engine, settings: Any = None, *, min_outcomes: int | None = None,
                 use_prior: bool = True) -> None:
        self.engine = engine
        self.settings = settings
        self.min_outcomes = min_outcomes if min_outcomes is not None else getattr(settings, "risk_min_outcomes",
                                                                                  DEFAULT_MIN_OUTCOMES)
        self.use_prior = use_prior
        self._lock = threading.Lock()
        self._models: dict[int, TrainedRiskModel] = {}  # record id -> loaded model (small: few versions)
        self._prior: TrainedRiskModel | None = None
        self._prior_loaded = False

    def _prior_model(self) -> TrainedRiskModel | None:
        with self._lock:
            if not self._prior_loaded:
                self._prior = load_prior() if self.use_prior else None
                self._prior_loaded = True
            return self._prior

    def _model_for(self, conn: Connection, repository: str, outcomes: int) -> TrainedRiskModel | None:
        """The active trained model, reloaded only when a newer one was activated (one small query per call).

        The look-up stays a query rather than a cached answer: a model promoted by another process (the CLI,
        another replica) serves the next estimate.
        """
        rows = conn.execute(
            select(RiskModelRecord.id, RiskModelRecord.repository).where(
                RiskModelRecord.active.is_(True),
                or_(RiskModelRecord.repository == repository, RiskModelRecord.repository.is_(None)),
            ).order_by(RiskModelRecord.created_at.desc(), RiskModelRecord.id.desc())
        ).all()  # fmt: skip
        own = [r for r in rows if r.repository is not None]
        glob = [r for r in rows if r.repository is None]
        if own and outcomes >= self.min_outcomes:
            chosen = own[0]
        elif glob:
            chosen = glob[0]
        else:
            return None
        with self._lock:
            model = self._models.get(chosen.id)
        if model is None:
            blob = conn.execute(select(RiskModelRecord.blob).where(RiskModelRecord.id == chosen.id)).scalar()
            assert blob is not None
            model = TrainedRiskModel.from_bytes(blob)
            with self._lock:
                self._models[chosen.id] = model
                while len(self._models) > 16:  # keep the newest few versions
                    self._models.pop(min(self._models))
        return model

    def _recentred_prior(self, outcomes: int, failures: int) -> TrainedRiskModel | None:
        prior = self._prior_model()
        if prior is None or not isinstance(prior.estimator, RiskModel):
            return None
        blend = BlendedRiskModel(prior.estimator, None, n_outcomes=outcomes, n_failures=failures)
        return TrainedRiskModel(estimator=blend, metadata={**prior.metadata, "version": f"prior-{prior.version}"})

    def _context(self, conn: Connection, evidence: Evidence) -> list[dict[str, Any]]:
        """Earlier history rows that the new deployment's history features depend on (raw records)."""
        t, repo, env = evidence.created_at, evidence.repository, evidence.environment
        cols = (HistoryRow.id, HistoryRow.deployment_id, HistoryRow.repository, HistoryRow.environment,
                HistoryRow.sha, HistoryRow.created_at, HistoryRow.outcome, HistoryRow.outcome_at, HistoryRow.features)
        earlier = (HistoryRow.repository == repo, HistoryRow.created_at < t,
                   HistoryRow.deployment_id != str(evidence.deployment_id))
        in_env = HistoryRow.environment == env
        newest = (HistoryRow.created_at.desc(), HistoryRow.id.desc())
        queries = [
            select(*cols).where(*earlier, in_env).order_by(*newest).limit(CONTEXT_ENV_ROWS),
            select(*cols).where(*earlier, in_env, HistoryRow.created_at >= t - timedelta(days=30))
            .order_by(*newest).limit(CONTEXT_ENV_30D_CAP),
            select(*cols).where(*earlier).order_by(*newest).limit(CONTEXT_REPO_ROWS),
        ]  # fmt: skip
        seen: dict[int, dict[str, Any]] = {}
        for query in queries:
            for r in conn.execute(query):
                if r.id in seen:
                    continue
                rec: dict[str, Any] = dict(r.features or {})
                rec.update(deployment_id=r.deployment_id, repository=r.repository, environment=r.environment,
                           sha=r.sha, created_at=r.created_at.astimezone(UTC).isoformat(), outcome=r.outcome,
                           outcome_at=_iso(r.outcome_at))
                seen[r.id] = rec
        return [seen[k] for k in sorted(seen)]

    def _last_env_failure(self, conn: Connection, evidence: Evidence) -> datetime | None:
        """When the environment's latest failure became known before the deployment (exact, from SQL)."""
        where = (HistoryRow.repository == evidence.repository, HistoryRow.environment == evidence.environment)
        last_fail = conn.execute(
            select(func.max(HistoryRow.outcome_at))
            .where(*where, HistoryRow.outcome_at < evidence.created_at, HistoryRow.outcome.in_(sorted(FAILED_OUTCOMES)))
        ).scalar()  # fmt: skip
        if last_fail is not None and last_fail.tzinfo is None:
            last_fail = last_fail.replace(tzinfo=UTC)
        return last_fail

    def feature_row(self, evidence: Evidence, conn: Connection | None = None) -> pd.Series:
        """The model features of one deployment, with history features from earlier stored deployments."""
        if conn is None:
            with read_only(self.engine) as own:
                return self.feature_row(evidence, own)
        row = evidence.to_history_row()
        row["outcome"] = None
        row["outcome_at"] = None
        records = [*self._context(conn, evidence), row]
        combined = coerce_history(pd.DataFrame.from_records(records, columns=list(HISTORY_COLUMNS)))
        features = build_features(combined)
        pos = int(np.flatnonzero(combined["deployment_id"].to_numpy() == str(evidence.deployment_id))[-1])
        out = features.iloc[pos].copy()
        last_fail = self._last_env_failure(conn, evidence)
        if "hours_since_env_failure_log" in out.index:
            hours = (evidence.created_at - last_fail).total_seconds() / 3600 if last_fail else None
            out["hours_since_env_failure_log"] = math.log1p(max(hours, 0.0)) if hours is not None else np.nan
        return out

    def estimate(self, evidence: Evidence) -> RiskEstimate | None:
        """Return the trained model's (or re-centred prior's) estimate, or None to keep the rule-based one."""
        # one read transaction for every look-up: one snapshot, one connection, no write lock on SQLite
        with read_only(self.engine) as conn:
            outcomes, failures = labelled_counts(conn, evidence.repository)
            model = self._model_for(conn, evidence.repository, outcomes)
            source = "model"
            if model is None:
                if outcomes < self.min_outcomes or not evidence.change.ok:
                    return None  # nothing honest to say about this repository's failure rate yet
                model = self._recentred_prior(outcomes, failures)
                if model is None:
                    return None
                source = "prior"
            features = self.feature_row(evidence, conn)
        return risk_estimate(model, features, version=model.version, source=source)


# --------------------------------------------------------------------------------------- retrainer

class Retrainer:
    """Retrains a repository's model after enough new labelled outcomes, in the background."""

    def __init__(self, engine: Engine, settings: Any = None, *, after: int | None = None,
                 prior: bool = True) -> None:
        self.engine = engine
        self.settings = settings
        self.after = after if after is not None else getattr(settings, "retrain_after", DEFAULT_RETRAIN_AFTER)
        self.prior = prior
        self._tasks: dict[str, asyncio.Task[RiskModelRecord | None]] = {}

    def new_outcomes(self, repository: str) -> int:
        """Labelled outcomes of ``repository`` recorded since its latest registered model."""
        with read_only(self.engine) as conn:
            last = conn.execute(
                select(func.max(RiskModelRecord.created_at)).where(RiskModelRecord.repository == repository)
            ).scalar()  # fmt: skip
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        return labelled_count(self.engine, repository, since=last)

    def _train(self, repository: str) -> RiskModelRecord | None:
        try:
            return retrain(self.engine, repository, prior=self.prior)
        except ValueError as exc:  # e.g. no labelled rows: nothing to learn yet
            log.warning("risk_registry.retrain_skipped", extra={"repository": repository, "error": str(exc)})
            return None

    async def _run(self, repository: str) -> RiskModelRecord | None:
        try:
            return await asyncio.to_thread(self._train, repository)
        except Exception:  # a failed retraining must not take the worker down; the champion stays
            log.exception("risk_registry.retrain_failed", extra={"repository": repository})
            return None
        finally:
            self._tasks.pop(repository, None)

    async def outcome_recorded(self, repository: str) -> asyncio.Task[RiskModelRecord | None] | None:
        """Count the repository's new outcomes; schedule a retraining when there are enough (returns it)."""
        if repository in self._tasks or self.after <= 0:
            return self._tasks.get(repository)
        count = await asyncio.to_thread(self.new_outcomes, repository)
        if count < self.after or repository in self._tasks:
            return None
        log.info("risk_registry.retrain_scheduled", extra={"repository": repository, "new_outcomes": count})
        task = asyncio.get_running_loop().create_task(self._run(repository), name=f"retrain:{repository}")
        self._tasks[repository] = task
        return task

    async def aclose(self) -> None:
        """Wait for running retrainings (they run in threads and cannot be interrupted midway)."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
