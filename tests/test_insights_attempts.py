"""Superseded attempts, abandoned escalations and the insights, over HTTP (/api/v1) and in both computations.

A re-run supersedes the earlier attempt of the run (deployments.begin): the attempt is no deployment of its own.
An escalation whose run ended without an answer is abandoned: the gate did escalate it, but nobody waits on it
and it never went out. Rows are seeded as the lifecycle's transitions leave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, update

from github_app import db, insights
from github_app.app import create_app
from github_app.db.models import DecisionRecord, Deployment, Outcome
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.test_insights_sql import _same

TOKEN = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
S1, S2, S3 = "1" * 40, "2" * 40, "3" * 40


def _deployment(conn: Any, key: str, run_id: int, sha: str, at: datetime, state: str, action: str,
                answer: str | None = None, human: bool = False) -> None:  # fmt: skip
    verdict = {"approve": "go", "escalate": "escalate", "reject": "no-go"}[action]
    dep_id = conn.execute(insert(Deployment).values(
        key=key, repository="o/r", environment="production", sha=sha, run_id=run_id, created_at=at, state=state,
        answer=answer, answered_at=at + timedelta(seconds=20) if answer else None, verdict=verdict,
        decided_action=action, risk=0.3, decided_at=at + timedelta(seconds=10), human_reviewed=human,
    ).returning(Deployment.id)).scalar_one()  # fmt: skip
    decision = conn.execute(insert(DecisionRecord).values(
        deployment_id=dep_id, created_at=at + timedelta(seconds=10), verdict=verdict, action=action, risk=0.3, data={},
    ).returning(DecisionRecord.id)).scalar_one()  # fmt: skip
    conn.execute(update(Deployment).where(Deployment.id == dep_id).values(decision_id=decision))


def _outcome(conn: Any, n: int, sha: str, outcome: str, at: datetime) -> None:
    conn.execute(insert(Outcome).values(repository="o/r", environment="production", sha=sha, outcome=outcome,
                                        source="deployment_status", source_key=f"attempts:{n}", observed_at=at,
                                        detail={}))  # fmt: skip


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        # run 1: the first attempt escalated, then a re-run superseded it and the gate approved the re-run,
        # which went out and then had an incident
        _deployment(conn, "o/r/1/production/1", 1, S1, T, "abandoned", "escalate")
        _deployment(conn, "o/r/1/production/2", 1, S1, T + timedelta(hours=1), "answered", "approve", "approved")
        _outcome(conn, 1, S1, "success", T + timedelta(hours=1, minutes=10))
        _outcome(conn, 2, S1, "incident", T + timedelta(hours=2))
        # run 2: escalated, then the run was cancelled while it waited (GitHub reports the deployment failed)
        _deployment(conn, "o/r/2/production/1", 2, S2, T + timedelta(hours=3), "abandoned", "escalate")
        _outcome(conn, 3, S2, "failure", T + timedelta(hours=3, minutes=30))
        # run 3: approved by the gate; a reviewer's click while it was evaluated was refused ("still evaluating")
        # but is on record as an allowed review: the answer was still the gate's
        _deployment(conn, "o/r/3/production/1", 3, S3, T + timedelta(hours=4), "answered", "approve", "approved",
                    human=True)  # fmt: skip
        _outcome(conn, 4, S3, "success", T + timedelta(hours=4, minutes=10))


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, Engine]]:
    engine = db.make_engine(database_url)
    _seed(engine)
    with ServerThread(create_app(make_settings(database_url, dashboard_token=Secret(TOKEN)), workers=0,
                                 engine=engine)) as srv:  # fmt: skip
        yield srv.url, engine
    engine.dispose()


def test_a_superseded_attempt_or_an_abandoned_escalation_is_no_decision_wait_or_failure(served) -> None:
    url, _ = served
    gate = httpx.get(f"{url}/api/v1/gate-quality", params={"since": "3d"}, headers=AUTH).json()["overall"]
    dora = httpx.get(f"{url}/api/v1/dora", params={"since": "3d"}, headers=AUTH).json()["overall"]
    everything = httpx.get(f"{url}/api/v1/insights", params={"since": "3d"}, headers=AUTH).json()
    waiting = httpx.get(f"{url}/api/v1/escalations", headers=AUTH).json()["items"]
    # three deployments: run 1 once (its re-run), run 2, run 3
    assert (gate["deployments"], gate["decided"]) == (3, 3)
    # the gate approved run 1's re-run and run 3 on its own, and escalated run 2
    assert (gate["approved_automatically"], gate["escalated"], gate["rejected_automatically"]) == (2, 1, 0)
    assert gate["approved"] == 2
    # nobody waits on an abandoned escalation, superseded or not
    assert (gate["waiting_now"], gate["oldest_waiting_seconds"]) == (0, None)
    assert waiting == []  # the dashboard's "Waiting for a reviewer" reads the same list
    # run 2 never went out: the failure GitHub reported for its cancelled run is no failed change, nor a catch
    assert (gate["failures_observed"], gate["escaped_failures"], gate["caught"]) == (1, 1, 0)
    assert (dora["deployments_with_outcome"], dora["failed_deployments"], dora["change_failure_rate"]) == (2, 1, 0.5)
    # run 3 was answered by the gate, however a refused click is on record
    assert everything["answer_times"]["automatic"] == [0, 2, 0, 0, 0, 0, 0]
    assert everything["answer_times"]["human"] == [0] * 7
    assert [w["verdicts"] for w in everything["weeks"] if sum(w["verdicts"].values())] in (
        [{"go": 2, "escalate": 1, "no-go": 0, "none": 0}],
        [{"go": 1, "escalate": 1, "no-go": 0, "none": 0}, {"go": 1, "escalate": 0, "no-go": 0, "none": 0}],
        [{"go": 1, "escalate": 0, "no-go": 0, "none": 0}, {"go": 1, "escalate": 1, "no-go": 0, "none": 0}],
    )  # fmt: skip


def test_the_database_and_the_python_definitions_agree_on_attempts(served) -> None:
    _, engine = served
    now = datetime.now(UTC)
    window = insights.window_from("3d", None, now)
    _same(insights.build(insights.load(engine, window), now).to_json(), insights.report(engine, window, now).to_json())
