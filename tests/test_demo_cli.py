"""`gonogo demo --keep-running` as a new user meets it: every hint it prints works, and stopping it cleans up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from github_app.commands.demo import clip


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError("the demo never printed " + repr(marker) + ":\n" + "\n".join(lines))


def test_every_hint_of_keep_running_works_and_sigterm_removes_the_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "github_app", "demo", "--keep-running"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = _read_until(proc, "Ctrl-C to stop.", timeout=240)
        folders = list(tmp_path.glob("gonogo-demo-*"))
        assert len(folders) == 1, folders

        header = next(line for line in lines if line.startswith("deployment"))
        assert "environment" in header.split()
        why_at = header.index("why")
        table = lines[lines.index(header) + 1:]
        table = table[:table.index("")]
        assert len(table) >= 4
        assert all(len(line) <= why_at + 100 for line in table), "the why column runs past its width"

        hints = lines[next(i for i, line in enumerate(lines) if line.endswith("Try:")) + 1:]
        dashboard = next(h for h in hints if "/dashboard" in h)
        url, password = dashboard.split()[0], dashboard.rsplit("password ", 1)[1].rstrip(")")
        page = httpx.get(url, auth=("me", password), timeout=30)
        assert page.status_code == 200 and "Recent deployments" in page.text

        commands = [h.strip() for h in hints if h.startswith("  ") and "/dashboard" not in h]
        assert len(commands) == 3, commands
        for command in commands:
            run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120, check=False)  # fmt: skip
            assert run.returncode == 0, f"{command!r} failed:\n{run.stderr}"
            if "_sandbox/calls" in command:
                assert '"method"' in run.stdout and '"path"' in run.stdout
            elif "deployments list" in command:
                assert "acme/shop#" in run.stdout
            else:
                assert "deployment_protection_rule" in run.stdout
        for command in commands:  # a name the shell can run: on PATH or a path to the executable
            program = command.split()[-3] if command.startswith("GONOGO_") else command.split()[0]
            assert program in ("gonogo", "curl") or Path(tmp_path, program).is_file()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not folders[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_clip_marks_what_it_cut() -> None:
    assert clip("short", 10) == "short"
    cut = clip("Ensure every test passes before production", 20)
    assert cut.endswith("…") and len(cut) <= 20
    assert not re.search(r"\s…$", cut)


def test_database_commands_need_no_github_app_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env["GONOGO_DATABASE_URL"] = f"sqlite:///{tmp_path / 'gonogo.db'}"
    for args in (["db", "upgrade"], ["deliveries", "list"], ["deployments", "list"]):
        run = subprocess.run([sys.executable, "-m", "github_app", *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        assert run.returncode == 0, f"gonogo {' '.join(args)}: {run.stderr}"
        assert "GONOGO_WEBHOOK_SECRET" not in run.stderr


def test_a_scenario_that_does_not_load_is_named_and_leaves_no_folder(tmp_path: Path) -> None:
    scenario = tmp_path / "mine.yml"
    scenario.write_text("repos: 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env["TMPDIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", "github_app", "demo", "--scenario", str(scenario)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"Cannot load scenario {scenario}" in run.stderr
    assert not list(tmp_path.glob("gonogo-demo-*"))
