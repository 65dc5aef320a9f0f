"""Exactly one answer per deployment while a `gonogo worker` is SIGKILLed again and again mid-way."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Deployment
from github_app.sandbox import running_sandbox
from github_app.sandbox.webhooks import deployment_protection_rule_payload, send_webhook
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import SECRET, make_settings, subprocess_env
from tests.scenarios import REPO, release_state

pytestmark = pytest.mark.slow

KILLS = 24
FIRST_WAVE = 10
DEPLOYMENTS = FIRST_WAVE + KILLS  # one more is requested while the worker is down, so each restart finds work
# a log line of a worker at work: it claimed a delivery, decided, or answered (start-up logs none of these)
BUSY = re.compile(r"delivery\.|decision\.|gate\.")
# a freeze over the whole week: every staging deployment escalates to a reviewer
ESCALATING = """
environments:
  staging:
    reviewers: {teams: [acme/sre]}
    freeze:
      - {start: "MON 00:00", end: "SUN 23:59", reason: "always frozen"}
"""


def _start_worker(env: dict[str, str], cwd: Path, n: int) -> subprocess.Popen[bytes]:
    with (cwd / f"worker-{n:02d}.log").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "github_app", "--log-format", "text", "worker", "--workers", "3"],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def _states(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(Deployment.state, func.count()).group_by(Deployment.state)).all())
    finally:
        engine.dispose()


@pytest.mark.timeout(600)  # 24 start-ups of a worker process, on a busy CI machine
def test_sigkilled_workers_leave_every_deployment_with_exactly_one_answer(database_url, tmp_path):
    rng = random.Random(20261207)
    state = release_state(policy=ESCALATING)
    repo = state.repo(REPO)
    head = repo.branches["main"]
    deps = []
    for i in range(DEPLOYMENTS):
        # production deployments are decided by gonogo; staging ones escalate and wait for a reviewer
        deps.append(state.add_deployment(REPO, head, "staging" if i % 5 == 0 else "production", creator="dora"))
    state.latency = 0.03  # every GitHub call takes a moment, so kills land in the middle of evaluations
    assert state.app is not None and state.app.private_key_pem
    with running_sandbox(state) as sandbox:
        settings = make_settings(
            database_url, app_id=str(state.app.id), private_key=Secret(state.app.private_key_pem),
            github_api_url=sandbox.url, workers=0, lease_seconds=2.0,
        )  # fmt: skip
        env = subprocess_env(
            database_url, GONOGO_APP_ID=str(state.app.id), GONOGO_PRIVATE_KEY=state.app.private_key_pem,
            GONOGO_GITHUB_API_URL=sandbox.url, GONOGO_LEASE_SECONDS="2", GONOGO_SWEEP_SECONDS="1",
            GONOGO_POLL_SECONDS="0.1", GONOGO_RETRY_BASE_SECONDS="0.2", GONOGO_RETRY_MAX_SECONDS="1",
            GONOGO_MAX_ATTEMPTS="3", GONOGO_RISK_MODEL="off", GONOGO_CHECK_MANIFEST="off",
        )  # fmt: skip
        with ServerThread(create_app(settings)) as web:  # intake only: the worker process does the work
            worker = _start_worker(env, tmp_path, 0)
            for dep in deps[:FIRST_WAVE]:
                payload = deployment_protection_rule_payload(state, dep.id, full_name=REPO)
                assert send_webhook(web.url, SECRET, "deployment_protection_rule", payload).status_code == 202
            mid_work = 0
            try:
                for n in range(1, KILLS + 1):
                    # kill at a random moment once the worker is at work, not during its start-up
                    log = tmp_path / f"worker-{n - 1:02d}.log"
                    deadline = time.monotonic() + 40
                    while time.monotonic() < deadline and not BUSY.search(log.read_text()):
                        time.sleep(0.05)
                    mid_work += bool(BUSY.search(log.read_text()))
                    time.sleep(rng.uniform(0.0, 0.4))
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(timeout=10)
                    payload = deployment_protection_rule_payload(state, deps[FIRST_WAVE + n - 1].id, full_name=REPO)
                    assert send_webhook(web.url, SECRET, "deployment_protection_rule", payload).status_code == 202
                    if n % 7 == 0:  # now and then, GitHub redelivers a request while gonogo is down
                        payload = deployment_protection_rule_payload(state, rng.choice(deps).id, full_name=REPO)
                        assert send_webhook(web.url, SECRET, "deployment_protection_rule", payload).status_code == 202
                    worker = _start_worker(env, tmp_path, n)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    states = _states(database_url)
                    if sum(states.get(s, 0) for s in ("answered", "escalated")) == DEPLOYMENTS:
                        break
                    time.sleep(0.2)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
        assert mid_work >= 20, mid_work  # kills that landed while the worker was deciding or answering
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("worker-*.log"))[-2:])
        states = _states(database_url)
        staging = sum(1 for dep in deps if dep.environment == "staging")
        assert states == {"answered": DEPLOYMENTS - staging, "escalated": staging}, (states, logs)
        for dep in deps:
            gate = repo.gates[(dep.run_id, dep.environment)]
            took = [r for r in gate.history if r.state is not None and r.accepted]
            if dep.environment == "production":
                assert [r.state for r in took] == ["approved"], (dep.id, gate.history)
            else:
                assert took == [] and gate.waiting, (dep.id, gate.history)
        # the escalations' check runs show the buttons: each escalation was published, kills or not
        escalations = [r for r in state.check_runs(REPO, name="gonogo") if r.conclusion == "action_required"]
        assert len({r.external_id for r in escalations}) == staging
