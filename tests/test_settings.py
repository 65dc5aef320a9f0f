"""Settings: public variable names, clear errors, secrets that never print."""

from __future__ import annotations

import subprocess
import sys

import pytest

from github_app.sandbox.auth import generate_key_pair
from github_app.settings import DEFAULT_API_URL, Settings, SettingsError
from tests.helpers import ROOT

KEY, _ = generate_key_pair(1024)  # the settings check that a key opens


def test_reads_the_public_variables(tmp_path):
    key_file = tmp_path / "app.pem"
    key_file.write_text(KEY)
    s = Settings.from_env(
        {
            "GONOGO_APP_ID": "123",
            "GONOGO_PRIVATE_KEY_PATH": str(key_file),
            "GONOGO_WEBHOOK_SECRET": "shh",
            "GONOGO_GITHUB_API_URL": "https://ghe.example.com/api/v3/",
            "GONOGO_DATABASE_URL": "postgresql://u@h/db",
            "GONOGO_WORKERS": "4",
        }
    )
    assert (s.app_id, s.github_api_url, s.database_url, s.workers) == (
        "123", "https://ghe.example.com/api/v3", "postgresql://u@h/db", 4,
    )  # fmt: skip
    assert s.private_key is not None and s.private_key.reveal() == KEY
    assert "shh" not in repr(s) and KEY.splitlines()[1] not in repr(s)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": KEY, "GONOGO_WEBHOOK_SECRET": "x"})
    assert s.github_api_url == DEFAULT_API_URL
    assert s.database_url == f"sqlite:///{tmp_path / 'gonogo.db'}"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": KEY}, "GONOGO_WEBHOOK_SECRET is not set"),
        ({"GONOGO_WEBHOOK_SECRET": "x", "GONOGO_PRIVATE_KEY": KEY}, "GONOGO_APP_ID is not set"),
        ({"GONOGO_WEBHOOK_SECRET": "x", "GONOGO_APP_ID": "1"}, "GONOGO_PRIVATE_KEY is not set"),
        ({"GONOGO_WEBHOOK_SECRET": "x", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": "hello"}, "PEM"),
        ({"GONOGO_WEBHOOK_SECRET": "x", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY_PATH": "/nope.pem"}, "cannot be read"),
        ({"GONOGO_WEBHOOK_SECRET": "x", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": KEY, "GONOGO_WORKERS": "many"}, "GONOGO_WORKERS"),
    ],
)
def test_bad_or_missing_values_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle) as err:
        Settings.from_env(env)
    assert "GitHub App" in str(err.value) or "GONOGO_" in str(err.value)


def test_serve_without_webhook_secret_refuses_to_start(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": KEY, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "github_app", "serve", "--port", "0"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "GONOGO_WEBHOOK_SECRET is not set" in proc.stderr
    assert "webhook secret" in proc.stderr.lower()
    assert not (tmp_path / "gonogo.db").exists()  # refused before touching anything


def test_every_command_has_help():
    from click.testing import CliRunner

    from github_app.cli import cli

    def walk(group, path):
        for name, cmd in getattr(group, "commands", {}).items():
            yield path + [name], cmd
            yield from walk(cmd, path + [name])

    commands = list(walk(cli, []))
    assert {"serve", "worker", "receive"} <= {p[0] for p, _ in commands}
    for path, _ in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path
    assert ROOT.joinpath("pyproject.toml").read_text().count('gonogo = "github_app.cli:main"') == 1


def test_db_upgrade_creates_the_schema_on_an_empty_database(empty_database_url, monkeypatch):
    from click.testing import CliRunner

    from github_app import db
    from github_app.cli import cli

    monkeypatch.setenv("GONOGO_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("GONOGO_WEBHOOK_SECRET", "s")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = db.make_engine(empty_database_url)
    try:
        assert db.is_current(engine)
        assert f"is at revision {db.head_revision(engine)}" in result.output
    finally:
        engine.dispose()


def test_every_variable_gonogo_reads_is_known_and_documented():
    import re

    from github_app.settings import KNOWN_VARIABLES

    read = {m for path in (ROOT / "github_app").rglob("*.py") for m in re.findall(r"GONOGO_[A-Z_]+[A-Z]", path.read_text())}
    assert read == KNOWN_VARIABLES
    readme = (ROOT / "README.md").read_text()
    assert [name for name in sorted(KNOWN_VARIABLES) if f"`{name}`" not in readme] == []


def test_a_misspelt_variable_is_reported_with_what_it_probably_meant(caplog):
    from github_app.settings import misspelt_variables

    env = {"GONOGO_WEBHOOK_SECRET": "s", "GONOGO_WORKER": "4", "GONOGO_DATABASE_ULR": "x",
           "GONOGO_SLACK_SECRET": "a policy's secret_env", "GONOGO_WORKERS": "2"}  # fmt: skip
    assert misspelt_variables(env) == {"GONOGO_WORKER": "GONOGO_WORKERS", "GONOGO_DATABASE_ULR": "GONOGO_DATABASE_URL"}
    with caplog.at_level("WARNING"):
        Settings.from_env(env, require_github=False)
    warned = {(r.variable, r.did_you_mean) for r in caplog.records if r.getMessage() == "settings.unknown_variable"}
    assert warned == {("GONOGO_WORKER", "GONOGO_WORKERS"), ("GONOGO_DATABASE_ULR", "GONOGO_DATABASE_URL")}
