"""`gonogo backfill`: past deployments and statuses from the GitHub sandbox (real HTTP) into the history."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from github_app import db
from github_app.cli import cli
from github_app.db.models import HistoryRow, Outcome
from github_app.sandbox import SandboxState, generate_key_pair, running_sandbox

REPO = "acme/shop"
APP_ID = 31337
INSTALLATION = 4242


def _world() -> tuple[SandboxState, dict[str, int]]:
    """Four deployments to production and one to staging, a day apart, with a mix of outcomes."""
    state = SandboxState()
    private_pem, public_pem = generate_key_pair()
    state.set_app(APP_ID, public_pem, private_key_pem=private_pem)
    state.add_installation(INSTALLATION, "acme")
    state.add_repo(REPO, default_branch="main")
    state.advance(-10 * 86400)
    c1 = state.add_commit(REPO, message="start", author="alice", branch="main",
                          files=[{"filename": "api/app.py", "status": "added", "additions": 300}])
    ids: dict[str, int] = {}
    d1 = state.add_deployment(REPO, c1.sha, "production", waiting=False)
    state.add_deployment_status(REPO, d1.id, "in_progress")
    state.add_deployment_status(REPO, d1.id, "success")
    ids["d1"] = d1.id
    state.advance(86400)
    c2 = state.add_commit(REPO, message="orders", author="bob", branch="main", parents=[c1.sha],
                          files=[{"filename": "api/orders.py", "additions": 40, "deletions": 12},
                                 {"filename": "db/migrations/0002_orders.sql", "additions": 20}])
    c3 = state.add_commit(REPO, message="tests", author="carol", branch="main", parents=[c2.sha],
                          files=[{"filename": "tests/test_orders.py", "additions": 35}])
    d2 = state.add_deployment(REPO, c3.sha, "production", waiting=False)
    state.add_deployment_status(REPO, d2.id, "failure")
    ids["d2"] = d2.id
    state.advance(3600)
    d3 = state.add_deployment(REPO, c3.sha, "staging", waiting=False)
    state.add_deployment_status(REPO, d3.id, "success")
    ids["d3"] = d3.id
    state.advance(86400)
    c4 = state.add_commit(REPO, message="fix", author="bob", branch="main", parents=[c3.sha],
                          files=[{"filename": "api/orders.py", "additions": 3, "deletions": 1}])
    d4 = state.add_deployment(REPO, c4.sha, "production", waiting=False)
    state.add_deployment_status(REPO, d4.id, "success")
    state.add_deployment_status(REPO, d4.id, "inactive")  # a later deployment replaced it: still a success
    ids["d4"] = d4.id
    state.advance(86400)
    d5 = state.add_deployment(REPO, c4.sha, "production", waiting=False)  # no finished status yet
    state.add_deployment_status(REPO, d5.id, "in_progress")
    ids["d5"] = d5.id
    state.advance(-state.clock_offset)  # back to now: app JWTs are checked against the sandbox clock
    return state, ids


@pytest.fixture
def world() -> Iterator[tuple[SandboxState, dict[str, int], str]]:
    state, ids = _world()
    with running_sandbox(state) as sandbox:
        yield state, ids, sandbox.url


def _env(state: SandboxState, api_url: str, database_url: str) -> dict[str, str | None]:
    assert state.app is not None and state.app.private_key_pem
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GONOGO_")}
    env.update(GONOGO_APP_ID=str(state.app.id), GONOGO_PRIVATE_KEY=state.app.private_key_pem,
               GONOGO_GITHUB_API_URL=api_url, GONOGO_DATABASE_URL=database_url)
    return env


def _rows(database_url: str) -> dict[str, HistoryRow]:
    engine = db.make_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(HistoryRow)).all()
            for r in rows:
                session.expunge(r)
    finally:
        engine.dispose()
    return {r.deployment_id: r for r in rows}


def _outcomes(database_url: str) -> list[Any]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Outcome.sha, Outcome.outcome, Outcome.source_key)).all())
    finally:
        engine.dispose()


def test_backfill_reads_history_and_is_idempotent(world: Any, database_url: str) -> None:
    state, ids, api_url = world
    runner = CliRunner()
    env = _env(state, api_url, database_url)
    result = runner.invoke(cli, ["backfill", "--repo", REPO], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"installation {INSTALLATION}" in result.output and "5 deployments, 5 new rows" in result.output
    rows = _rows(database_url)
    key = {name: f"github:{REPO}:{dep}" for name, dep in ids.items()}
    assert set(rows) == set(key.values())
    assert [rows[key[n]].outcome for n in ("d1", "d2", "d3", "d4", "d5")] == [
        "success", "failure", "success", "success", None]
    first, second = rows[key["d1"]].features, rows[key["d2"]].features
    assert first["commits"] is None and first["hour_utc"] is not None  # nothing earlier to compare with
    assert second["commits"] == 2 and second["files_changed"] == 3 and second["additions"] == 95
    assert second["deletions"] == 12 and second["authors"] == 2 and second["has_migration"] is True
    assert second["hours_since_last_deploy"] == pytest.approx(24.0, abs=0.1)
    assert second["env_failure_rate_30d"] == 0.0
    assert rows[key["d4"]].features["env_failure_rate_30d"] == pytest.approx(0.5)
    assert rows[key["d3"]].features["hours_since_last_deploy"] is None  # first staging deployment
    assert rows[key["d5"]].features["commits"] == 0  # redeploy of the same sha
    assert sorted(o.outcome for o in _outcomes(database_url)) == ["failure", "success", "success", "success"]

    again = runner.invoke(cli, ["backfill", "--repo", REPO, "--installation", str(INSTALLATION)], env=env,
                          catch_exceptions=False)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "0 new rows, 0 updated" in again.output
    assert len(_rows(database_url)) == 5 and len(_outcomes(database_url)) == 4

    # an outcome that arrived since the last run is filled in, still without new rows
    state.add_deployment_status(REPO, ids["d5"], "error")
    third = runner.invoke(cli, ["backfill", "--repo", REPO], env=env, catch_exceptions=False)
    assert "0 new rows, 1 updated" in third.output
    assert _rows(database_url)[key["d5"]].outcome == "failure"


def test_backfill_since_and_unknown_repository(world: Any, database_url: str) -> None:
    state, _ids, api_url = world
    env = _env(state, api_url, database_url)
    runner = CliRunner()
    since = "2999-01-01"
    result = runner.invoke(cli, ["backfill", "--repo", REPO, "--since", since, "--no-compare"], env=env)
    assert result.exit_code == 0 and "0 deployments, 0 new rows" in result.output
    missing = runner.invoke(cli, ["backfill", "--repo", "acme/nope"], env=env)
    assert missing.exit_code != 0 and "acme/nope" in missing.output
    bad = runner.invoke(cli, ["backfill", "--repo", "nope"], env=env)
    assert bad.exit_code != 0 and "owner/name" in bad.output
