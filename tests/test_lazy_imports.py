"""Light commands and a web-only process do not import the heavy libraries they never use.

Timings are measured by benchmarks/startup.py; this checks the cause, which does not depend on the
machine: which modules a fresh interpreter loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from github_app.cli import LAZY_COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sklearn", "scipy", "matplotlib")
# What each light command must not load either: numpy (a small report is counted without it), the
# GitHub client, the database layer and the web stack; --help not even pydantic or the YAML reader.
SERVER_SIDE = ("numpy", "githubkit", "httpx", "sqlalchemy", "alembic", "starlette", "uvicorn", "cryptography", "jwt")
NOT_LOADED = {
    "help": (*HEAVY, *SERVER_SIDE, "pydantic", "yaml", "rules", "scorer"),
    "policy": (*HEAVY, *SERVER_SIDE, "ijson", "orjson"),
    "assess": (*HEAVY, *SERVER_SIDE),
}
# All of gonogo's own modules that --help and policy validate may load: a new import on their path
# (the settings, the rule catalog, the evidence models) fails here rather than slowing every run.
OWN_MODULES = {
    "help": {"github_app", "github_app.cli", "github_app.logs"},
    "policy": {"github_app", "github_app.cli", "github_app.logs", "github_app.commands", "github_app.commands.policy",
               "rules", "rules.policy", "rules.freeze", "rules.severity"},
}  # fmt: skip


def _loaded(args: list[str], cwd: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "github_app", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode in (0, 3), run.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time")}


@pytest.mark.parametrize("command", ["help", "policy", "assess"])
def test_light_commands_import_no_heavy_library(command: str, tmp_path: Path) -> None:
    (tmp_path / "gonogo.yml").write_text("extends: default\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "report.xml").write_bytes(
        (ROOT / "tests/fixtures/corpus/artifacts/junit/go-junit-report/019-report.xml").read_bytes())
    args = {"help": ["--help"], "policy": ["policy", "validate", str(tmp_path / "gonogo.yml")],
            "assess": ["assess", "--artifacts", str(reports)]}[command]  # fmt: skip
    modules = _loaded(args, tmp_path)
    loaded = {name.split(".")[0] for name in modules}
    assert "click" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not loaded & set(NOT_LOADED[command]), sorted(loaded & set(NOT_LOADED[command]))
    # none of them reads the settings: `load_settings` imports them for the commands that do
    assert "github_app.settings" not in modules
    own = {name for name in modules if name.split(".")[0] in ("github_app", "rules", "scorer")}
    if command in OWN_MODULES:
        assert own <= OWN_MODULES[command], sorted(own - OWN_MODULES[command])
    if command == "policy":  # validating a policy needs neither the rules nor the evidence models
        assert "rules.policy" in modules
        assert not modules & {"rules.catalog", "rules.types", "scorer.evidence", "scorer.assessment"}, sorted(
            modules & {"rules.catalog", "rules.types", "scorer.evidence", "scorer.assessment"})
    if command == "assess":  # the command really ran its code, so the check covers what it imports
        assert {"rules.pipeline", "scorer.parsers.junit", "pydantic"} <= modules


def test_the_program_still_flushes_its_output_at_exit(tmp_path: Path) -> None:
    # `main` freezes the objects left at exit so the interpreter skips its final sweeps; a piped,
    # block-buffered output larger than the buffer must still arrive whole.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-m", "github_app", "policy", "schema"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.stdout) > 8192
    schema = json.loads(run.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/") and "EnvironmentPolicy" in schema["$defs"]


def test_a_web_only_process_loads_no_risk_model(tmp_path: Path) -> None:
    probe = f"""
import sys, httpx
from github_app.app import create_app
from github_app.serving import ServerThread
from github_app.settings import Secret, Settings
settings = Settings(webhook_secret=Secret("s" * 20), database_url="sqlite:///{tmp_path / 'web.db'}", redelivery_seconds=0)
with ServerThread(create_app(settings, workers=0)) as srv:
    assert httpx.get(srv.url + "/healthz").status_code == 200
print(",".join(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "", run.stdout


def test_recorded_help_of_lazy_commands_is_their_own() -> None:
    ctx = click.Context(cli)
    for name, (_module, _attribute, recorded) in LAZY_COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and (command.help or "").split("\n")[0].strip() == recorded, name
