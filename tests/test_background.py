"""What runs beside the workers: inbox pruning, and notifications sent by a `gonogo worker` process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from github_app import db, inbox, notify
from github_app.app import create_app
from github_app.cli import cli
from github_app.db.models import Delivery, OutboxMessage
from github_app.inbox import IncomingDelivery, insert_deliveries
from github_app.serving import ServerThread
from tests.helpers import make_settings, post_webhook, rsa_private_pem, subprocess_env
from tests.test_notify import Receiver

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _store(engine, delivery_id: str, state: str, received: datetime) -> None:
    insert_deliveries(engine, [IncomingDelivery(delivery_id, "ping", None, None, '{"zen": "z"}', state == "ignored")])
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.delivery_id == delivery_id).values(state=state, received_at=received))


def _ids(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Delivery.delivery_id)).scalars())


def _old_and_new(engine) -> None:
    old, new = NOW - timedelta(days=40), NOW - timedelta(days=2)
    for state in ("done", "ignored", "dead", "pending", "processing"):
        _store(engine, f"old-{state}", state, old)
        _store(engine, f"new-{state}", state, new)


def test_prune_removes_old_done_and_ignored_deliveries_and_keeps_everything_else(engine):
    _old_and_new(engine)
    assert inbox.prune_deliveries(engine, timedelta(days=30), now=NOW) == 2
    assert _ids(engine) == {
        "old-dead", "old-pending", "old-processing",
        "new-done", "new-ignored", "new-dead", "new-pending", "new-processing",
    }  # fmt: skip
    assert inbox.prune_deliveries(engine, timedelta(days=30), now=NOW) == 0  # nothing left to prune
    assert inbox.prune_deliveries(engine, timedelta(days=30), ("dead",), now=NOW) == 1
    assert "old-dead" not in _ids(engine) and "new-dead" in _ids(engine)
    assert inbox.prune_deliveries(engine, timedelta(days=1), ("done", "ignored", "dead"), now=NOW) == 3
    assert _ids(engine) == {"old-pending", "old-processing", "new-pending", "new-processing"}


def test_prune_refuses_work_in_progress_and_negative_ages(engine):
    with pytest.raises(ValueError, match="cannot prune deliveries in state pending, processing"):
        inbox.prune_deliveries(engine, timedelta(days=1), ("done", "processing", "pending"))
    with pytest.raises(ValueError, match="negative"):
        inbox.prune_deliveries(engine, timedelta(days=-1))


def test_prune_goes_in_batches_and_reports_progress(engine):
    for i in range(25):
        _store(engine, f"d-{i:02d}", "done", NOW - timedelta(days=90))
    _store(engine, "recent", "done", NOW)
    seen: list[int] = []
    assert inbox.prune_deliveries(engine, timedelta(days=30), batch_size=10, now=NOW, progress=seen.append) == 25
    assert seen == [10, 20, 25]
    assert _ids(engine) == {"recent"}


def test_prune_command(engine, database_url, monkeypatch):
    monkeypatch.setenv("GONOGO_DATABASE_URL", database_url)
    monkeypatch.setenv("GONOGO_WEBHOOK_SECRET", "s")
    now = datetime.now(UTC)
    _store(engine, "ten-days", "done", now - timedelta(days=10))
    _store(engine, "forty-days", "done", now - timedelta(days=40))
    _store(engine, "forty-days-dead", "dead", now - timedelta(days=40))

    result = CliRunner().invoke(cli, ["deliveries", "prune"])  # default age: GONOGO_INBOX_RETENTION_DAYS, 30
    assert result.exit_code == 0, result.output
    assert "Pruned 1 done/ignored delivery received more than 30d ago." in result.output
    assert _ids(engine) == {"ten-days", "forty-days-dead"}

    result = CliRunner().invoke(cli, ["deliveries", "prune", "--older-than", "1w", "--state", "dead", "--state", "done"])
    assert result.exit_code == 0, result.output
    assert "Pruned 2 dead/done deliveries received more than 1w ago." in result.output
    assert _ids(engine) == set()

    bad = CliRunner().invoke(cli, ["deliveries", "prune", "--older-than", "ten days"])
    assert bad.exit_code == 2 and "'ten days' is not a duration" in bad.output
    wrong_state = CliRunner().invoke(cli, ["deliveries", "prune", "--state", "pending"])
    assert wrong_state.exit_code == 2 and "'pending' is not one of" in wrong_state.output
    monkeypatch.setenv("GONOGO_INBOX_RETENTION_DAYS", "0")
    keep_all = CliRunner().invoke(cli, ["deliveries", "prune"])
    assert keep_all.exit_code == 2 and "say how old with --older-than" in keep_all.output


def test_serve_prunes_the_inbox_by_itself(engine, database_url):
    now = datetime.now(UTC)
    _store(engine, "stale", "done", now - timedelta(days=3))
    _store(engine, "stale-dead", "dead", now - timedelta(days=3))
    app = create_app(make_settings(database_url, inbox_retention_days=2), workers=1)
    with ServerThread(app) as srv:
        assert post_webhook(srv.url, "ping", {"zen": "fresh"}, delivery_id="fresh").status_code == 202
        deadline = time.monotonic() + 20
        while "stale" in _ids(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ids(engine) == {"stale-dead", "fresh"}


def test_retention_zero_keeps_every_delivery(engine, database_url):
    _store(engine, "ancient", "done", datetime.now(UTC) - timedelta(days=4000))
    app = create_app(make_settings(database_url, inbox_retention_days=0), workers=1)
    with ServerThread(app) as srv:
        assert post_webhook(srv.url, "ping", {"zen": "z"}, delivery_id="fresh").status_code == 202
        deadline = time.monotonic() + 20
        while _state(engine, "fresh") != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _ids(engine) == {"ancient", "fresh"}


def _state(engine, delivery_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Delivery.state).where(Delivery.delivery_id == delivery_id)).scalar()


def _queue_message(engine, key: str, url: str) -> None:
    with engine.begin() as conn:
        assert notify.enqueue(conn, key=key, channel="slack", url=url, body={"text": f"message {key}"})


def _outbox_states(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(OutboxMessage.key, OutboxMessage.state)).all())


def test_a_worker_process_sends_notifications_while_it_runs(engine, database_url, tmp_path):
    """fly.toml runs the intake with no workers and the work in `gonogo worker`: notifications must go out there."""
    receiver = Receiver(failures=0)
    env = subprocess_env(database_url, GONOGO_APP_ID="1", GONOGO_PRIVATE_KEY=rsa_private_pem(),
                         GONOGO_CHECK_MANIFEST="off", GONOGO_RISK_MODEL="off",
                         GONOGO_NOTIFICATION_NETWORKS="127.0.0.0/8")  # the chat receiver runs here  # fmt: skip
    with ServerThread(receiver.app) as chat, (tmp_path / "worker.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "github_app", "--log-format", "text", "worker", "--workers", "1"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            time.sleep(0.5)  # queued after the worker started: it must notice, not just drain at start-up
            _queue_message(engine, "while-running", f"{chat.url}/slack")
            deadline = time.monotonic() + 30
            while _outbox_states(engine).get("while-running") != "sent" and time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "worker.log").read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert _outbox_states(engine) == {"while-running": "sent"}, (tmp_path / "worker.log").read_text()
    assert [m["body"]["text"] for sent in receiver.delivered.values() for m in sent] == ["message while-running"]
    assert proc.returncode == 0


def test_a_batch_worker_run_processes_deliveries_sends_notifications_and_prunes(engine, database_url, tmp_path):
    receiver = Receiver(failures=0)
    now = datetime.now(UTC)
    _store(engine, "old-done", "done", now - timedelta(days=60))
    insert_deliveries(engine, [IncomingDelivery("due", "ping", None, None, '{"zen": "z"}', False)])
    env = subprocess_env(database_url, GONOGO_APP_ID="1", GONOGO_PRIVATE_KEY=rsa_private_pem(),
                         GONOGO_CHECK_MANIFEST="off", GONOGO_RISK_MODEL="off",
                         GONOGO_NOTIFICATION_NETWORKS="127.0.0.0/8")  # the chat receiver runs here  # fmt: skip
    with ServerThread(receiver.app) as chat:
        _queue_message(engine, "queued", f"{chat.url}/slack")
        done = subprocess.run(
            [sys.executable, "-m", "github_app", "--log-format", "text", "worker", "--until-idle"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _outbox_states(engine) == {"queued": "sent"}
    assert len(receiver.delivered) == 1
    assert _ids(engine) == {"due"} and _state(engine, "due") == "done"
