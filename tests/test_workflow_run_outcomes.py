"""workflow_run.completed over HTTP: how a gated deploy workflow ended labels the releases it shipped."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Delivery, Deployment, HistoryRow, Outcome
from github_app.features.outcomes import record_outcome
from github_app.serving import ServerThread
from tests.helpers import make_settings, post_webhook

REPO = "octo/shop"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _gated(engine, run_id: int, environment: str, sha: str, answer: str | None) -> None:
    key = f"{REPO}#{run_id}/{environment}/{run_id * 10}"
    with engine.begin() as conn:
        conn.execute(insert(Deployment).values(key=key, repository=REPO, environment=environment, sha=sha,
                                               run_id=run_id, created_at=T0, answer=answer,
                                               answered_at=T0 if answer else None))  # fmt: skip
        conn.execute(insert(HistoryRow).values(deployment_id=key, repository=REPO, environment=environment, sha=sha,
                                               created_at=T0, features={}))  # fmt: skip


def _run(run_id: int, conclusion: str) -> dict[str, Any]:
    return {
        "action": "completed",
        "workflow_run": {"id": run_id, "run_attempt": 1, "conclusion": conclusion, "status": "completed",
                         "head_sha": "a" * 40, "updated_at": (T0 + timedelta(minutes=20)).isoformat(),
                         "html_url": f"https://github.com/{REPO}/actions/runs/{run_id}"},
        "repository": {"full_name": REPO},
    }  # fmt: skip


def _send_all(database_url: str, engine, payloads: list[dict[str, Any]]) -> None:
    with ServerThread(create_app(make_settings(database_url, inbox_retention_days=0), workers=1, engine=engine)) as srv:
        for i, payload in enumerate(payloads):
            assert post_webhook(srv.url, "workflow_run", payload, delivery_id=f"wr-{i}").status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                states = set(conn.execute(select(Delivery.state)).scalars())
            if states == {"done"}:
                return
            time.sleep(0.05)
    raise AssertionError(f"deliveries not done: {states}")


def _labels(engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as conn:
        return {(r.environment, r.sha[:1]): r.outcome for r in conn.execute(select(HistoryRow))}


def test_how_a_gated_run_ended_labels_its_releases(database_url, engine):
    _gated(engine, 1, "staging", "a" * 40, "approved")  # failed after approval: failure
    _gated(engine, 1, "production", "b" * 40, "approved")
    _gated(engine, 2, "production", "c" * 40, "approved")  # succeeded: success
    _gated(engine, 3, "staging", "d" * 40, "approved")  # a later environment was rejected: says nothing
    _gated(engine, 3, "production", "e" * 40, "rejected")
    _gated(engine, 4, "production", "f" * 40, "approved")  # cancelled: says nothing
    _gated(engine, 5, "production", "0" * 40, "approved")  # its deployment status already said success
    record_outcome(engine, repository=REPO, environment="production", sha="0" * 40, outcome="success",
                   source="deployment_status", source_key="deployment_status:5", observed_at=T0 + timedelta(minutes=5))  # fmt: skip
    payloads = [_run(1, "failure"), _run(2, "success"), _run(3, "failure"), _run(4, "cancelled"), _run(5, "failure"),
                _run(999, "failure")]  # fmt: skip  # 999: a workflow gonogo never gated
    _send_all(database_url, engine, [*payloads, _run(1, "failure")])  # the same run again: counted once
    assert _labels(engine) == {
        ("staging", "a"): "failure", ("production", "b"): "failure", ("production", "c"): "success",
        ("staging", "d"): None, ("production", "e"): None, ("production", "f"): None, ("production", "0"): "success",
    }  # fmt: skip
    with engine.connect() as conn:
        sources = conn.execute(select(Outcome.source, Outcome.outcome).order_by(Outcome.id)).all()
    assert [tuple(s) for s in sources].count(("workflow_run", "failure")) == 2
    assert ("workflow_run", "success") in [tuple(s) for s in sources]


def _status(deployment_id: int, status_id: int, sha: str, state: str, at: datetime) -> dict[str, Any]:
    return {
        "action": "created",
        "deployment_status": {"id": status_id, "state": state, "environment": "production",
                              "created_at": at.isoformat(), "description": "deployed"},
        "deployment": {"id": deployment_id, "sha": sha, "environment": "production"},
        "repository": {"full_name": REPO},
    }  # fmt: skip


def test_a_status_of_a_redeploy_does_not_silence_the_run_of_an_earlier_deployment(database_url, engine):
    """Run 7 deployed the sha (GitHub deployment 70) and later failed; meanwhile run 8 re-deployed the same sha
    (deployment 80), whose own status said success. Only deployment 70's own status could speak for run 7."""
    sha = "7" * 40
    for run_id, deployment_id, at in ((7, 70, T0), (8, 80, T0 + timedelta(minutes=5))):
        key = f"{REPO}#{run_id}/production/{run_id * 10}"
        with engine.begin() as conn:
            conn.execute(insert(Deployment).values(key=key, repository=REPO, environment="production", sha=sha,
                                                   run_id=run_id, github_deployment_id=deployment_id, created_at=at,
                                                   answer="approved", answered_at=at))  # fmt: skip
            conn.execute(insert(HistoryRow).values(deployment_id=key, repository=REPO, environment="production",
                                                   sha=sha, created_at=at, features={}))  # fmt: skip
    with ServerThread(create_app(make_settings(database_url, inbox_retention_days=0), workers=1, engine=engine)) as srv:
        assert post_webhook(srv.url, "deployment_status", _status(80, 801, sha, "success", T0 + timedelta(minutes=10)),
                            delivery_id="st-80").status_code == 202  # fmt: skip
        _wait_done(engine)
        assert post_webhook(srv.url, "workflow_run", _run(7, "failure"), delivery_id="wr-7").status_code == 202
        _wait_done(engine)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(HistoryRow.deployment_id, HistoryRow.outcome)).all())
    assert rows == {f"{REPO}#7/production/70": "failure", f"{REPO}#8/production/80": "success"}


def _wait_done(engine) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if set(conn.execute(select(Delivery.state)).scalars()) == {"done"}:
                return
        time.sleep(0.05)
    raise AssertionError("deliveries not done")


def _attempt(run_id: int, attempt: int, conclusion: str, started: datetime, ended: datetime) -> dict[str, Any]:
    payload = _run(run_id, conclusion)
    payload["workflow_run"].update(run_attempt=attempt, run_started_at=started.isoformat(),
                                   updated_at=ended.isoformat())  # fmt: skip
    return payload


def test_each_attempt_of_a_run_labels_only_its_own_releases(database_url, engine):
    """Run 9's first attempt was approved and then failed; its re-run (a new GitHub deployment) was approved
    and succeeded. Before, the completion of attempt 1 labelled every deployment of the run, the re-run's too,
    and the re-run's success could no longer undo that failure. Run 10's first attempt was escalated and
    abandoned when the run was re-run; its unanswered deployment made the whole run record nothing, so the
    re-run's failure was lost. A completion now speaks for the deployments made between its attempt's start
    and its end."""
    rows = (
        (9, 91, T0, "approved", "answered"), (9, 92, T0 + timedelta(minutes=40), "approved", "answered"),
        (10, 101, T0, None, "abandoned"), (10, 102, T0 + timedelta(minutes=40), "approved", "answered"),
    )  # fmt: skip
    for run_id, deployment_id, at, answer, state in rows:
        key = f"{REPO}#{run_id}/production/{deployment_id}"
        with engine.begin() as conn:
            conn.execute(insert(Deployment).values(key=key, repository=REPO, environment="production",
                                                   sha=str(run_id % 10) * 40, run_id=run_id,
                                                   github_deployment_id=deployment_id, created_at=at, state=state,
                                                   answer=answer, answered_at=at if answer else None))  # fmt: skip
            conn.execute(insert(HistoryRow).values(deployment_id=key, repository=REPO, environment="production",
                                                   sha=str(run_id % 10) * 40, created_at=at, features={}))  # fmt: skip
    first = (T0 - timedelta(minutes=1), T0 + timedelta(minutes=20))
    second = (T0 + timedelta(minutes=39), T0 + timedelta(minutes=60))
    _send_all(database_url, engine, [
        _attempt(9, 1, "failure", *first), _attempt(9, 2, "success", *second),
        _attempt(10, 1, "cancelled", *first), _attempt(10, 2, "failure", *second),
    ])  # fmt: skip
    with engine.connect() as conn:
        labels = dict(conn.execute(select(HistoryRow.deployment_id, HistoryRow.outcome)).all())
    assert labels == {
        f"{REPO}#9/production/91": "failure", f"{REPO}#9/production/92": "success",
        f"{REPO}#10/production/101": None, f"{REPO}#10/production/102": "failure",
    }  # fmt: skip
