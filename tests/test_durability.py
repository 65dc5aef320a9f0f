"""Crash safety and scale-out: real `gonogo` processes, killed and restarted, racing on one database."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from github_app import db
from github_app.db.models import Delivery
from github_app.inbox import IncomingDelivery, insert_deliveries
from github_app.serving import free_port
from tests.helpers import post_webhook, rsa_private_pem, subprocess_env

pytestmark = pytest.mark.slow


def _start_serve(env: dict[str, str], port: int, cwd) -> subprocess.Popen[str]:
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "github_app", "serve", "--port", str(port), "--workers", "2"],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gonogo serve exited early: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("gonogo serve did not come up in 60 s")


def _rows(url: str) -> dict[str, tuple[str, int]]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {r.delivery_id: (r.state, r.completed_count) for r in conn.execute(select(Delivery))}
    finally:
        engine.dispose()


def test_sigkill_mid_stream_loses_nothing_and_processes_each_ack_once(database_url, tmp_path):
    env = subprocess_env(
        database_url, GONOGO_APP_ID="1", GONOGO_PRIVATE_KEY=rsa_private_pem(), GONOGO_LEASE_SECONDS="3",
        GONOGO_POLL_SECONDS="0.1",
    )  # fmt: skip
    port = free_port()
    proc = _start_serve(env, port, tmp_path)
    base = f"http://127.0.0.1:{port}"
    acked: set[str] = set()
    lock = threading.Lock()
    killed = threading.Event()

    def send(i: int) -> None:
        delivery = f"crash-{i:04d}"
        payload = {"zen": "Design for failure.", "hook_id": i, "pad": "x" * 2000}
        try:
            r = post_webhook(base, "ping", payload, delivery_id=delivery)
        except httpx.HTTPError:
            return
        if 200 <= r.status_code < 300:
            with lock:
                acked.add(delivery)
                if len(acked) == 200 and not killed.is_set():
                    killed.set()
                    proc.send_signal(signal.SIGKILL)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(500)))
    proc.wait(timeout=30)
    assert killed.is_set() and 200 <= len(acked) < 500, len(acked)
    before = _rows(database_url)
    assert acked <= set(before)  # every acknowledged delivery was durable at the moment of the kill

    proc = _start_serve(env, port, tmp_path)
    try:
        missing = [i for i in range(500) if f"crash-{i:04d}" not in acked]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # GitHub redelivers what failed
            list(pool.map(send, missing))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = _rows(database_url)
            if len(rows) == 500 and all(state == "done" for state, _ in rows.values()):
                break
            time.sleep(0.25)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    rows = _rows(database_url)
    assert len(acked) == 500 and set(rows) == acked
    assert {state for state, _ in rows.values()} == {"done"}
    assert {count for _, count in rows.values()} == {1}  # exactly once, none twice


def test_four_worker_processes_on_postgres_never_process_a_delivery_twice(postgres_url, tmp_path):
    engine = db.make_engine(postgres_url)
    items = [IncomingDelivery(f"pg-{i:05d}", "ping", None, None, '{"zen": "z"}', False) for i in range(2000)]
    for start in range(0, 2000, 500):
        insert_deliveries(engine, items[start : start + 500])
    env = subprocess_env(postgres_url, GONOGO_APP_ID="1", GONOGO_PRIVATE_KEY=rsa_private_pem())
    log_files = [tmp_path / f"worker-{i}.log" for i in range(4)]
    procs = []
    for path in log_files:
        with path.open("w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "github_app", "--log-format", "text", "worker", "--workers", "4", "--until-idle"],
                    env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                )
            )
    for p in procs:
        p.wait(timeout=240)
    logs = [path.read_text() for path in log_files]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], logs
    per_process = [log.count("delivery.processed") for log in logs]
    with engine.connect() as conn:
        states = dict(conn.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
        counts = dict(
            conn.execute(select(Delivery.completed_count, func.count()).group_by(Delivery.completed_count)).all()
        )
    engine.dispose()
    assert states == {"done": 2000}
    assert counts == {1: 2000}
    assert sum(per_process) == 2000 and all(n > 0 for n in per_process), per_process
