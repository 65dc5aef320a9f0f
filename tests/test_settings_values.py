"""Settings an operator can get wrong: each is refused at start-up with the variable named, never a
traceback, never silently read as something else, and never echoing a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from github_app.sandbox.auth import generate_key_pair
from github_app.settings import Settings, SettingsError

KEY, _ = generate_key_pair(1024)
BASE = {"GONOGO_WEBHOOK_SECRET": "a-webhook-secret", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": KEY}


def _gonogo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "github_app", *args], check=False, cwd=tmp_path, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}, timeout=120,
    )  # fmt: skip


def test_a_binary_key_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    der = tmp_path / "app.der"
    der.write_bytes(b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00\xc3\xff")  # a DER key, not PEM text
    env = {**BASE, "GONOGO_PRIVATE_KEY": "", "GONOGO_PRIVATE_KEY_PATH": str(der)}
    with pytest.raises(SettingsError, match="GONOGO_PRIVATE_KEY_PATH") as err:
        Settings.from_env(env)
    assert "PEM" in str(err.value)
    run = _gonogo(tmp_path, env, "doctor")
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "GONOGO_PRIVATE_KEY_PATH" in run.stdout


def test_a_pem_that_is_not_a_usable_private_key_is_refused_at_start_up() -> None:
    broken = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(SettingsError, match="GONOGO_PRIVATE_KEY") as err:
        Settings.from_env({**BASE, "GONOGO_PRIVATE_KEY": broken})
    assert "bm90IGEga2V5" not in str(err.value)
    assert Settings.from_env(BASE).private_key is not None


@pytest.mark.parametrize(
    "url",
    ["nonsense", "mysql://u@db/gonogo", "sqlite:relative.db", "postgresql://u:hunter2@db:port/gonogo",
     "postgresql+asyncpg://u:hunter2@db/gonogo"],
)  # fmt: skip
def test_a_database_url_gonogo_cannot_use_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(SettingsError, match="GONOGO_DATABASE_URL") as err:
        Settings.from_env({**BASE, "GONOGO_DATABASE_URL": url})
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("url", ["sqlite:///gonogo.db", "sqlite:////var/lib/gonogo.db", "sqlite://",
                                 "postgres://u:p@db:5432/gonogo?sslmode=disable", "postgresql+psycopg://u@db/gonogo"])
def test_the_database_urls_the_readme_names_are_accepted(url: str) -> None:
    assert Settings.from_env({**BASE, "GONOGO_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize("command", [["db", "upgrade"], ["deliveries", "list"], ["deployments", "list"]])
def test_commands_on_an_unusable_database_url_say_so(tmp_path: Path, command: list[str]) -> None:
    run = _gonogo(tmp_path, {"GONOGO_DATABASE_URL": "postgresql://u:hunter2@db:port/gonogo"}, *command)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "hunter2" not in run.stderr
    assert "GONOGO_DATABASE_URL" in run.stderr


@pytest.mark.parametrize(
    "name", ["GONOGO_DRY_RUN", "GONOGO_DEMO", "GONOGO_RISK_MODEL", "GONOGO_CHECK_MANIFEST"],
)  # fmt: skip
def test_an_on_off_setting_with_another_value_is_refused_not_ignored(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: "enabled"})


def test_on_off_settings_read_their_documented_values() -> None:
    on = Settings.from_env({**BASE, "GONOGO_DRY_RUN": "1", "GONOGO_RISK_MODEL": "on", "GONOGO_CHECK_MANIFEST": "Yes"})
    assert (on.dry_run, on.risk_model, on.check_manifest) == (True, True, True)
    off = Settings.from_env({**BASE, "GONOGO_DRY_RUN": "off", "GONOGO_RISK_MODEL": "off", "GONOGO_CHECK_MANIFEST": "0"})
    assert (off.dry_run, off.risk_model, off.check_manifest) == (False, False, False)
    default = Settings.from_env(BASE)
    assert (default.dry_run, default.risk_model, default.check_manifest) == (False, True, True)


def test_risk_model_counts_are_settings() -> None:
    s = Settings.from_env({**BASE, "GONOGO_RISK_MIN_OUTCOMES": "40", "GONOGO_RETRAIN_AFTER": "10"})
    assert (s.risk_min_outcomes, s.retrain_after) == (40, 10)
    assert (Settings.from_env(BASE).risk_min_outcomes, Settings.from_env(BASE).retrain_after) == (20, 50)
    for name in ("GONOGO_RISK_MIN_OUTCOMES", "GONOGO_RETRAIN_AFTER"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**BASE, name: "twenty"})


def test_the_risk_provider_takes_its_threshold_from_the_settings() -> None:
    from github_app.risk_registry import Retrainer, RiskProvider

    s = Settings.from_env({**BASE, "GONOGO_RISK_MIN_OUTCOMES": "7", "GONOGO_RETRAIN_AFTER": "9"})
    assert RiskProvider(None, s).min_outcomes == 7  # type: ignore[arg-type]
    assert Retrainer(None, s).after == 9  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize("name", ["GONOGO_POLL_SECONDS", "GONOGO_LEASE_SECONDS", "GONOGO_ALERT_WINDOW_HOURS"])
def test_a_duration_that_is_not_a_finite_number_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: value})


@pytest.mark.parametrize(
    "name", ["GONOGO_POLL_SECONDS", "GONOGO_LEASE_SECONDS", "GONOGO_BODY_TIMEOUT_SECONDS",
             "GONOGO_GITHUB_TIMEOUT_SECONDS", "GONOGO_SWEEP_SECONDS"],
)  # fmt: skip
def test_an_interval_that_must_pass_time_is_refused_at_zero(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: "0"})


def test_every_missing_setting_is_named_at_once(tmp_path: Path) -> None:
    run = _gonogo(tmp_path, {}, "serve", "--port", "0")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    for name in ("GONOGO_WEBHOOK_SECRET", "GONOGO_APP_ID", "GONOGO_PRIVATE_KEY"):
        assert f"{name} is not set" in run.stderr, run.stderr
    assert not (tmp_path / "gonogo.db").exists()


def test_a_key_on_one_line_with_escaped_newlines_is_read() -> None:
    # docker's --env-file and many secret stores hold one line: the PEM arrives with literal \n (as probot accepts)
    one_line = KEY.strip().replace("\n", "\\n")
    settings = Settings.from_env({**BASE, "GONOGO_PRIVATE_KEY": one_line})
    assert settings.private_key is not None and settings.private_key.reveal() == KEY.strip() + "\n"


@pytest.mark.parametrize(("name", "value"), [("GONOGO_INBOX_RETENTION_DAYS", "1000000"),
                                             ("GONOGO_ALERT_WINDOW_HOURS", "1e12")])  # fmt: skip
def test_a_window_beyond_the_calendar_is_refused(name: str, value: str) -> None:
    # now minus it is before year 1: pruning and alert matching would fail on every run
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: value})


def test_a_key_set_twice_is_refused_rather_than_one_silently_ignored(tmp_path: Path) -> None:
    # the text won before: a key rotated by pointing GONOGO_PRIVATE_KEY_PATH at the new file was never used
    new_key, _ = generate_key_pair(1024)
    key_file = tmp_path / "new.pem"
    key_file.write_text(new_key)
    with pytest.raises(SettingsError, match="GONOGO_PRIVATE_KEY and GONOGO_PRIVATE_KEY_PATH are both set"):
        Settings.from_env({**BASE, "GONOGO_PRIVATE_KEY_PATH": str(key_file)})
