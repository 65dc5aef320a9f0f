"""SIGTERM stops a `gonogo worker` within its shutdown grace even while GitHub hangs under the sweeper."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Deployment
from github_app.sandbox import running_sandbox
from github_app.sandbox.webhooks import deployment_protection_rule_payload, send_webhook
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import SECRET, make_settings, subprocess_env
from tests.scenarios import LABEL, release_state

pytestmark = pytest.mark.slow

GRACE = 3.0
POLICY = """
environments:
  production:
    reviewers: {teams: [acme/sre], remind_after: 1s}
"""


def _state(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Deployment.state)).scalar()
    finally:
        engine.dispose()


def test_sigterm_stops_the_worker_within_the_grace_while_github_hangs(database_url, tmp_path):
    state = release_state(checks_running=True, policy=POLICY)
    assert state.app is not None and state.app.private_key_pem
    with running_sandbox(state) as sandbox:
        settings = make_settings(database_url, app_id=str(state.app.id), private_key=Secret(state.app.private_key_pem),
                                 github_api_url=sandbox.url, workers=1)  # fmt: skip
        with ServerThread(create_app(settings)) as web:  # escalate one deployment, then stop this process
            payload = deployment_protection_rule_payload(state, LABEL)
            assert send_webhook(web.url, SECRET, "deployment_protection_rule", payload).status_code == 202
            deadline = time.monotonic() + 60
            while _state(database_url) != "escalated":
                assert time.monotonic() < deadline, "the deployment did not escalate"
                time.sleep(0.1)
        # from now on GitHub accepts connections and never answers within the client's timeout
        hang = state.inject("*", None, "latency", seconds=40.0, times=None)
        env = subprocess_env(
            database_url, GONOGO_APP_ID=str(state.app.id), GONOGO_PRIVATE_KEY=state.app.private_key_pem,
            GONOGO_GITHUB_API_URL=sandbox.url, GONOGO_SWEEP_SECONDS="0.2", GONOGO_SHUTDOWN_GRACE_SECONDS=str(GRACE),
            GONOGO_RISK_MODEL="off", GONOGO_CHECK_MANIFEST="off", GONOGO_INBOX_RETENTION_DAYS="1",
        )  # fmt: skip
        log = tmp_path / "worker.log"
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "github_app", "worker", "--workers", "2"],
                                    env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while hang.fired == 0:  # the sweeper is now waiting on GitHub (reading the policy)
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the sweeper never called GitHub"
                time.sleep(0.05)
            time.sleep(0.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=GRACE + 20)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            state.clear_faults()
        assert proc.returncode == 0, log.read_text()[-3000:]
        # the grace, plus start-of-shutdown and interpreter exit on a busy machine; a hung sweeper takes minutes
        assert took < GRACE + 8, (took, log.read_text()[-3000:])
        assert "background.cancelled" in log.read_text()
    assert _state(database_url) == "escalated"  # cancelling changed nothing: the reminder is for a later sweep
