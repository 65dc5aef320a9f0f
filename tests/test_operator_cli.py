"""What an operator sees from the real commands when the database is away, and what start-up prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from github_app.sandbox.auth import generate_key_pair
from github_app.serving import free_port


def _gonogo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "github_app", *args], check=False, cwd=tmp_path, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["deliveries", "list"], ["deployments", "list"], ["worker", "--until-idle"],
                ["serve", "--port", "0", "--workers", "0"]],
)  # fmt: skip
def test_an_unreachable_database_is_named_without_a_traceback_or_its_password(tmp_path: Path, command: list[str]) -> None:
    key, _ = generate_key_pair(1024)
    env = {"GONOGO_DATABASE_URL": f"postgresql://gonogo:hunter2@127.0.0.1:{free_port()}/gonogo",
           "GONOGO_WEBHOOK_SECRET": "a-webhook-secret", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": key}  # fmt: skip
    run = _gonogo(tmp_path, env, *command)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "hunter2" not in run.stderr + run.stdout
    assert "Cannot reach the database postgresql" in run.stderr and "GONOGO_DATABASE_URL" in run.stderr


def test_a_sqlite_file_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    url = f"sqlite:///{tmp_path / 'not-a-folder' / 'gonogo.db'}"
    for command in (["db", "upgrade"], ["deliveries", "list"]):
        run = _gonogo(tmp_path, {"GONOGO_DATABASE_URL": url}, *command)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert "Cannot reach the database sqlite" in run.stderr and "create and write that file" in run.stderr


def test_creating_the_schema_prints_no_migration_chatter(tmp_path: Path) -> None:
    run = _gonogo(tmp_path, {"GONOGO_DATABASE_URL": f"sqlite:///{tmp_path / 'gonogo.db'}"}, "db", "upgrade")
    assert run.returncode == 0, run.stderr
    assert "is at revision" in run.stdout
    assert "setup plugin" not in run.stderr  # alembic's plugin registry, at info level


@pytest.mark.parametrize("command", [["serve", "--workers", "-1"], ["worker", "--workers", "-2"], ["worker", "--workers", "0"]])
def test_a_worker_count_that_runs_nothing_is_refused(tmp_path: Path, command: list[str]) -> None:
    # serve --workers -1 started "workers=-1": the sweeper ran, no delivery was ever processed
    run = _gonogo(tmp_path, {"GONOGO_DATABASE_URL": f"sqlite:///{tmp_path / 'gonogo.db'}"}, *command)
    assert run.returncode == 2 and "--workers" in run.stderr, run.stderr


def test_a_worker_process_with_gonogo_workers_0_is_refused(tmp_path: Path) -> None:
    key, _ = generate_key_pair(1024)
    env = {"GONOGO_DATABASE_URL": f"sqlite:///{tmp_path / 'gonogo.db'}", "GONOGO_WORKERS": "0",
           "GONOGO_WEBHOOK_SECRET": "a-webhook-secret", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": key}  # fmt: skip
    run = _gonogo(tmp_path, env, "worker", "--until-idle")
    assert run.returncode == 2 and "GONOGO_WORKERS is 0" in run.stderr, run.stderr


def test_an_age_beyond_the_calendar_is_a_usage_error(tmp_path: Path) -> None:
    env = {"GONOGO_DATABASE_URL": f"sqlite:///{tmp_path / 'gonogo.db'}"}
    run = _gonogo(tmp_path, env, "deliveries", "prune", "--older-than", "99999999w")
    assert run.returncode == 2 and "Traceback" not in run.stderr and "--older-than" in run.stderr, run.stderr
    run = _gonogo(tmp_path, {**env, "GONOGO_INBOX_RETENTION_DAYS": "1000000"}, "deliveries", "prune")
    assert run.returncode == 1 and "GONOGO_INBOX_RETENTION_DAYS" in run.stderr, run.stderr


def test_demo_mode_without_a_secret_serves_only_on_loopback(tmp_path: Path) -> None:
    # it checks no signature: on a reachable address anyone could post deliveries, clicks and commands included
    key, _ = generate_key_pair(1024)
    env = {"GONOGO_DATABASE_URL": f"sqlite:///{tmp_path / 'gonogo.db'}", "GONOGO_DEMO": "1", "GONOGO_APP_ID": "1",
           "GONOGO_PRIVATE_KEY": key}  # fmt: skip
    run = _gonogo(tmp_path, env, "serve", "--host", "0.0.0.0", "--port", "0")
    assert run.returncode == 1 and "GONOGO_DEMO" in run.stderr and "127.0.0.1" in run.stderr, run.stderr
    assert not (tmp_path / "gonogo.db").exists()
