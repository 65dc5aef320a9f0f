"""Risk model registry: champion/challenger, the provider's estimates, and retraining after new outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from github_app import db
from github_app.db.models import HistoryRow, RiskModelRecord
from github_app.risk_registry import (
    Retrainer,
    RiskProvider,
    active_model,
    active_record,
    history_features,
    register,
    retrain,
)
from scorer.evidence import Availability, ChangePart, Evidence, OperationalPart
from scorer.risk.artifact import TrainedRiskModel, train_model
from tests.simulate_history import simulate_history

REPO = "acme/svc-0"


@pytest.fixture
def engine(database_url: str) -> Any:
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    frame, _p = simulate_history(1500, repositories=1, seed=3)
    frame["repository"] = REPO
    return frame


def _store(engine: Any, frame: pd.DataFrame) -> None:
    with Session(engine) as session, session.begin():
        for rec in frame.to_dict("records"):
            created = pd.Timestamp(rec["created_at"]).to_pydatetime()
            session.add(HistoryRow(
                deployment_id=str(rec["deployment_id"]), repository=rec["repository"],
                environment=rec["environment"], sha=rec["sha"], created_at=created, outcome=rec["outcome"],
                outcome_at=pd.Timestamp(rec["outcome_at"]).to_pydatetime() if rec["outcome"] else None,
                features=history_features(rec),
            ))  # fmt: skip


def _worse(trained: TrainedRiskModel) -> TrainedRiskModel:
    """The same model with metrics clearly worse than its own (a challenger that must lose)."""
    meta = dict(trained.metadata)
    meta["version"] = trained.version + "-worse"
    meta["metrics"] = {**meta["metrics"], "roc_auc": meta["metrics"]["roc_auc"] - 0.2}
    return TrainedRiskModel(estimator=trained.estimator, metadata=meta)


def _evidence(created: datetime, **change: Any) -> Evidence:
    return Evidence(
        deployment_id="new-1", repository=REPO, environment="production", sha="f" * 40, created_at=created,
        change=ChangePart(availability=Availability.OK, commits=3, files_changed=12, additions=900, deletions=40,
                          subsystems=3, entropy=0.6, authors=2, author_experience=40, **change),
        operational=OperationalPart(availability=Availability.OK, hour_utc=created.hour, weekday=created.weekday()),
    )  # fmt: skip


def test_first_model_activates_and_worse_challenger_does_not(engine: Any, history: pd.DataFrame) -> None:
    first = train_model(history, random_state=0)
    rec = register(engine, first, REPO)
    assert rec.active and rec.version == first.version
    assert rec.meta["features"] and rec.meta["libraries"]["scikit-learn"] and "roc_auc" in rec.meta["metrics"]
    assert rec.window_start is not None and rec.window_end is not None and rec.window_end > rec.window_start
    loser = register(engine, _worse(first), REPO)
    assert not loser.active
    assert "worse than" in loser.meta["registry"]["reason"]
    assert active_record(engine, REPO).version == first.version  # type: ignore[union-attr]
    # the same data again is at least as good as itself: it takes over, and only one model is active
    again = register(engine, first, REPO)
    assert again.active and again.version != first.version  # same training version gets a suffix
    with Session(engine) as session:
        actives = session.scalars(select(RiskModelRecord).where(RiskModelRecord.active.is_(True))).all()
    assert [a.version for a in actives] == [again.version]


def test_active_model_prefers_repository_then_global(engine: Any, history: pd.DataFrame) -> None:
    assert active_model(engine, REPO) is None
    glob = register(engine, train_model(history.iloc[:600], random_state=0), None)
    assert active_record(engine, REPO).version == glob.version  # type: ignore[union-attr]
    own = register(engine, train_model(history, random_state=0), REPO)
    assert active_record(engine, REPO).version == own.version  # type: ignore[union-attr]
    assert active_record(engine, "acme/other").version == glob.version  # type: ignore[union-attr]
    loaded = active_model(engine, REPO)
    assert loaded is not None and loaded.version == own.version


def test_champion_rescored_on_challenger_validation_rows(engine: Any, history: pd.DataFrame) -> None:
    champion = train_model(history, random_state=0)
    register(engine, champion, REPO)
    # a challenger trained on a shuffled label column learns nothing: it must lose on the same rows
    noise = history.copy()
    rng = np.random.default_rng(0)
    noise["outcome"] = rng.permutation(noise["outcome"].to_numpy())
    challenger = train_model(noise, random_state=1)
    rec = register(engine, challenger, REPO, history=history)
    assert rec.meta["champion"]["version"] == champion.version
    assert rec.meta["champion"]["metrics"]["n"] == len(history.dropna(subset=["outcome"])) - round(
        len(history.dropna(subset=["outcome"])) * 0.8)
    assert not rec.active


def test_provider_model_estimate_with_version(engine: Any, history: pd.DataFrame) -> None:
    _store(engine, history)
    rec = retrain(engine, REPO, prior=False)
    assert rec.active
    provider = RiskProvider(engine, min_outcomes=10)
    created = pd.Timestamp(history["created_at"].max()).to_pydatetime() + timedelta(hours=2)
    estimate = provider.estimate(_evidence(created))
    assert estimate is not None
    assert estimate.source == "model" and estimate.model_version == rec.version
    assert 0.0 < estimate.probability < 1.0 and estimate.drivers
    # the check run can say how good the model is: its held-out catch rate at 10 % and calibration error
    assert estimate.quality is not None and estimate.quality.deployments == rec.meta["metrics"]["n"]
    assert estimate.quality.catch_rate_10 == rec.meta["metrics"]["catch_rate"]["0.1"]
    # environment history features come from the stored rows, not from nothing
    row = provider.feature_row(_evidence(created))
    failed = history[(history["environment"] == "production") & history["outcome"].isin(["failure", "rollback",
                                                                                             "incident"])]
    known = pd.to_datetime(failed["outcome_at"], utc=True).max()
    hours = (pd.Timestamp(created) - known).total_seconds() / 3600
    assert row["hours_since_env_failure_log"] == pytest.approx(np.log1p(hours))  # exact from SQL
    assert "env_deploys_30d_log" not in row.index  # a count that drifts with activity is no feature
    assert 0.0 <= row["env_recent_failure_rate"] <= 1.0
    # a newer active model is picked up without restarting the provider
    newer = register(engine, train_model(history, random_state=5), REPO)
    assert newer.active
    assert provider.estimate(_evidence(created)).model_version == newer.version  # type: ignore[union-attr]


def test_provider_cold_start_rules_then_recentred_prior(engine: Any, history: pd.DataFrame) -> None:
    created = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    provider = RiskProvider(engine, min_outcomes=20)
    assert provider.estimate(_evidence(created)) is None  # no outcomes yet: the rule-based estimate applies
    labelled = history.dropna(subset=["outcome"]).iloc[:60]
    _store(engine, labelled)
    estimate = provider.estimate(_evidence(created))
    assert estimate is not None and estimate.source == "prior" and estimate.model_version.startswith("prior-")
    # re-centred: the base rate moves from the public commits' rate towards this repository's failure rate
    rate = labelled["outcome"].isin(["failure", "rollback", "incident"]).mean()
    prior_rate = 0.21
    assert abs(estimate.base_rate - rate) < abs(prior_rate - rate)  # type: ignore[operator]
    assert estimate.drivers
    bare = Evidence(deployment_id="x", repository=REPO, environment="production", sha="a" * 40, created_at=created)
    assert provider.estimate(bare) is None  # no change evidence: the prior knows nothing else
    assert RiskProvider(engine, use_prior=False).estimate(_evidence(created)) is None


def test_repository_model_on_few_outcomes_yields_to_global(engine: Any, history: pd.DataFrame) -> None:
    small = history.iloc[:40]
    _store(engine, small)
    register(engine, train_model(small, random_state=0), REPO)
    created = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    provider = RiskProvider(engine, min_outcomes=1000)
    assert provider.estimate(_evidence(created)) is None
    glob = register(engine, train_model(history, random_state=0), None)
    estimate = provider.estimate(_evidence(created))
    assert estimate is not None and estimate.source == "model" and estimate.model_version == glob.version


def test_retrainer_schedules_after_enough_outcomes(engine: Any, history: pd.DataFrame) -> None:
    retrainer = Retrainer(engine, after=200, prior=False)

    async def scenario() -> tuple[Any, Any]:
        _store(engine, history.iloc[:100])
        early = await retrainer.outcome_recorded(REPO)
        _store(engine, history.iloc[100:800])
        task = await retrainer.outcome_recorded(REPO)
        assert task is not None
        record = await task
        return early, record

    early, record = asyncio.run(scenario())
    assert early is None
    assert record is not None and record.active and record.trained_rows > 500
    assert retrainer.new_outcomes(REPO) == 0  # counting restarts after training


def test_a_small_repositorys_model_keeps_learning_before_it_can_be_validated(engine: Any, history: pd.DataFrame) -> None:
    """Under 600 outcomes no model can hold rows out, so neither champion nor challenger has validation figures.

    The first model of a repository used to serve for good: every later challenger had no AUC of its own
    and lost to the champion re-scored on the newest rows. A challenger that learnt from every outcome the
    champion learnt from, and more, replaces an unvalidated champion; fewer or older outcomes never do.
    """
    _store(engine, history.iloc[:60])
    first = retrain(engine, REPO, prior=False)
    assert first.active and first.meta["registry"]["reason"] == "first model of its scope"
    assert not first.meta["metrics"].get("roc_auc")  # 60 rows: nothing held out
    _store(engine, history.iloc[60:300])
    labelled = history.iloc[:300].dropna(subset=["outcome"])
    newest = labelled.iloc[round(len(labelled) * 0.8):]
    assert newest["outcome"].isin(["failure", "rollback", "incident"]).any()  # the champion can be scored there
    second = retrain(engine, REPO, prior=False)
    assert not second.meta["metrics"].get("roc_auc")  # still too few rows to hold any out
    assert second.active, second.meta["registry"]["reason"]
    assert "more outcomes" in second.meta["registry"]["reason"]
    assert active_record(engine, REPO).version == second.version  # type: ignore[union-attr]
    # a challenger that learnt from fewer outcomes than the champion does not take over
    stale = register(engine, train_model(history.iloc[:100], random_state=0), REPO,
                     history=history.iloc[:300])  # fmt: skip
    assert not stale.active
    assert active_record(engine, REPO).version == second.version  # type: ignore[union-attr]


def test_a_validated_champion_is_not_replaced_by_a_challenger_that_could_not_be_validated(
        engine: Any, history: pd.DataFrame) -> None:  # fmt: skip
    champion = register(engine, train_model(history, random_state=0), REPO)
    assert champion.active and champion.meta["metrics"].get("roc_auc")
    small = register(engine, train_model(history.iloc[:200], random_state=0), REPO, history=history)
    assert not small.active and "worse than" in small.meta["registry"]["reason"]


def test_a_challenger_that_holds_back_more_good_releases_at_the_line_is_not_activated(
        engine: Any, history: pd.DataFrame) -> None:  # fmt: skip
    """Ranking and calibration within tolerance are not enough: the gate decides at approve.max_risk."""
    champion = train_model(history, random_state=0)
    first = register(engine, champion, REPO)
    net = first.meta["metrics"]["net_benefit"]
    assert net > 0  # held out: the model holds back failures worth more than the good releases it holds
    meta = dict(champion.metadata)
    meta["version"] = champion.version + "-holds-more"
    meta["metrics"] = {**meta["metrics"], "net_benefit": net - 0.002}  # ranks and calibrates exactly as well
    holds_more = register(engine, TrainedRiskModel(estimator=champion.estimator, metadata=meta), REPO)
    assert not holds_more.active
    assert "net benefit at 15%" in holds_more.meta["registry"]["reason"]
    assert active_record(engine, REPO).version == first.version  # type: ignore[union-attr]
