"""GitHub's longest environment name (255 characters) is stored on both backends, end to end."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import insert, select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Delivery, Deployment, HistoryRow, Outcome, Waiver
from github_app.serving import ServerThread
from tests.helpers import make_settings, post_webhook

LONGEST = "e" * 255  # GitHub's limit for an environment name


def test_a_255_character_environment_fits_every_table(database_url):
    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        # a release gonogo approved (only those take a success label: docs/outcomes.md)
        conn.execute(insert(Deployment).values(key=f"o/r/1/{LONGEST}/1", repository="o/r", environment=LONGEST,
                                               sha="a" * 40, run_id=1, created_at=now, answer="approved"))  # fmt: skip
        conn.execute(insert(HistoryRow).values(deployment_id=f"o/r/1/{LONGEST}/1", repository="o/r",
                                               environment=LONGEST, sha="a" * 40, created_at=now, features={}))  # fmt: skip
        conn.execute(insert(Waiver).values(repository="o/r", environment=LONGEST, rule_id="GNG-SEC-001",
                                           expires_at=now, reason="r", author="a", created_at=now))  # fmt: skip
    # a deployment status for it arrives over HTTP and becomes an outcome, not a dead delivery
    payload = {
        "deployment_status": {"id": 5, "state": "success", "environment": LONGEST, "created_at": now.isoformat()},
        "deployment": {"id": 9, "sha": "a" * 40, "environment": LONGEST},
        "repository": {"full_name": "o/r"},
    }
    with ServerThread(create_app(make_settings(database_url, inbox_retention_days=0), workers=1)) as srv:
        assert post_webhook(srv.url, "deployment_status", {**payload, "action": "created"}).status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                states = set(conn.execute(select(Delivery.state)).scalars())
            if states <= {"done", "dead"}:
                break
            time.sleep(0.05)
    with engine.connect() as conn:
        assert set(conn.execute(select(Delivery.state)).scalars()) == {"done"}
        assert conn.execute(select(Outcome.environment, Outcome.outcome)).one() == (LONGEST, "success")
        assert conn.execute(select(HistoryRow.outcome)).scalar() == "success"
    engine.dispose()


def test_a_deployment_to_a_255_character_environment_is_decided_end_to_end(database_url):
    """The deployment key (repository, run, environment, deployment id) outgrows 255 characters here; the
    deployment, its history row and its audit entries must all take it."""
    from tests.scenarios import LABEL, release_state
    from tests.world import running_world

    with running_world(database_url, release_state(environment=LONGEST)) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        assert world.gate(LABEL).answer == "approved"
        # the check run completes before the worker records its delivery done: wait for that too
        world.wait(lambda: {d.state for d in world.deliveries()} <= {"done", "ignored", "dead"}, what="the inbox")
        assert {d.state for d in world.deliveries()} <= {"done", "ignored"}
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        (key,) = conn.execute(select(HistoryRow.deployment_id)).one()
    engine.dispose()
    assert LONGEST in key and len(key) > 255
