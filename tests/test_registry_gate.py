"""The gate uses the registry's active model: its probability, drivers and version reach the decision."""

from __future__ import annotations

from sqlalchemy import select

from github_app import db
from github_app.db.models import DecisionRecord
from github_app.risk_registry import register
from scorer.risk.artifact import train_model
from tests.scenarios import LABEL, REPO, release_state
from tests.simulate_history import simulate_history
from tests.world import running_world


def test_decision_uses_active_model_with_version(database_url: str) -> None:
    history, _p = simulate_history(800, repositories=1, seed=11)
    history["repository"] = REPO
    engine = db.make_engine(database_url)
    try:
        record = register(engine, train_model(history, random_state=0), None)  # a global model serves acme/api
    finally:
        engine.dispose()
    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            decision = conn.execute(select(DecisionRecord.model_version, DecisionRecord.risk, DecisionRecord.data)).one()
    finally:
        engine.dispose()
    assert decision.model_version == record.version
    assert decision.risk is not None and 0.0 < decision.risk < 1.0
    assert record.version in summary
