"""`gonogo doctor` against the sandbox: all ✓ and exit 0 on a healthy installation, and each ✗ with its fix."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from github_app.cli import cli
from github_app.sandbox import SandboxState, generate_key_pair, running_sandbox
from github_app.sandbox.app_hooks import configure_hook
from github_app.sandbox.app_install import set_environment
from github_app.sandbox.hook_log import HookDelivery
from tests.helpers import SECRET
from tests.world import DEMO_SCENARIO

APP_YML = yaml.safe_load((Path(__file__).resolve().parents[1] / "app.yml").read_text())


def _healthy(state: SandboxState) -> None:
    assert state.app is not None
    state.app.permissions = dict(APP_YML["default_permissions"])
    state.app.events = list(APP_YML["default_events"])
    configure_hook(state, "https://gonogo.example.com/webhooks/github", SECRET)
    set_environment(state, "acme/shop", "production", [state.app.id])
    set_environment(state, "acme/shop", "preview", [])
    _delivery(state, 200)


def _delivery(state: SandboxState, status_code: int) -> None:
    with state.lock:
        state.hook.deliveries.append(HookDelivery(
            id=state.next_id(), guid=str(uuid.uuid4()), event="deployment_protection_rule", action="requested",
            installation_id=4242, repository_id=1, body=b"{}", delivered_at=state.now() - 60,
            status_code=status_code, status="OK" if status_code == 200 else f"Invalid HTTP Response: {status_code}",
        ))  # fmt: skip


@pytest.fixture
def doctor(database_url: str) -> Iterator[Callable[..., Any]]:
    state = SandboxState.from_scenario(DEMO_SCENARIO)
    _healthy(state)
    assert state.app is not None and state.app.private_key_pem
    with running_sandbox(state) as sandbox:
        env = {"GONOGO_APP_ID": str(state.app.id), "GONOGO_PRIVATE_KEY": state.app.private_key_pem,
               "GONOGO_WEBHOOK_SECRET": SECRET, "GONOGO_GITHUB_API_URL": sandbox.url,
               "GONOGO_DATABASE_URL": database_url, "GONOGO_REDELIVERY_SECONDS": "0"}  # fmt: skip

        def run(*args: str, **overrides: str | None) -> Any:
            result = CliRunner().invoke(cli, ["doctor", *args], env={**env, **overrides}, catch_exceptions=False)
            result.state = state  # type: ignore[attr-defined]
            return result

        run.state = state  # type: ignore[attr-defined]
        yield run


def _crosses(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("✗")]


def test_a_healthy_installation_passes_every_check(doctor: Any) -> None:
    result = doctor("--repo", "acme/shop")
    assert result.exit_code == 0, result.output
    assert not _crosses(result.output)
    lines = [line for line in result.output.splitlines() if line.startswith("✓")]
    for needle in ("settings read", "migrated", "private key matches", "match app.yml", "webhook https://",
                   "0 failing", "installed on 1 account", "installation 4242 on acme", "guards production (not: preview)",
                   "valid policy"):  # fmt: skip
        assert any(needle in line for line in lines), (needle, result.output)


def test_missing_settings(doctor: Any) -> None:
    result = doctor(GONOGO_APP_ID="")
    assert result.exit_code == 1 and "✗ settings: GONOGO_APP_ID is not set" in result.output


def test_a_key_of_another_app(doctor: Any) -> None:
    other, _ = generate_key_pair()
    result = doctor(GONOGO_PRIVATE_KEY=other)
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "private key does not open GitHub App" in cross and "Private keys > Generate" in result.output


def test_unmigrated_database(doctor: Any, tmp_path: Path) -> None:
    result = doctor(GONOGO_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "not migrated" in cross and "gonogo db upgrade" in result.output


def test_unreachable_database(doctor: Any, free_tcp_port: int) -> None:
    result = doctor(GONOGO_DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{free_tcp_port}/none")
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "is unreachable" in cross and "GONOGO_DATABASE_URL" in result.output


@pytest.fixture
def free_tcp_port() -> int:
    from github_app.serving import free_port

    return free_port()


def test_permissions_and_events_that_differ_from_app_yml(doctor: Any) -> None:
    doctor.state.app.permissions = {"checks": "write", "metadata": "read"}
    doctor.state.app.events = ["check_run"]
    result = doctor()
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "permission deployments: app.yml needs write" in cross and "event deployment_protection_rule" in cross


@pytest.mark.parametrize(("change", "needle"), [
    (lambda s: setattr(s.hook, "secret", None), "no webhook secret"),
    (lambda s: setattr(s.hook, "content_type", "form"), "content type 'form', not json"),
    (lambda s: setattr(s.hook, "insecure_ssl", "1"), "TLS verification is off"),
    (lambda s: setattr(s.hook, "url", None), "no webhook URL"),
])  # fmt: skip
def test_webhook_configuration(doctor: Any, change: Callable[[SandboxState], None], needle: str) -> None:
    change(doctor.state)
    result = doctor()
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert needle in cross and "General > Webhook" in result.output


def test_failing_deliveries(doctor: Any) -> None:
    _delivery(doctor.state, 502)
    result = doctor()
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "2 webhook deliveries in 24 h, 1 failing" in cross and "Invalid HTTP Response: 502" in cross


def test_no_installation(doctor: Any) -> None:
    doctor.state.installations.clear()
    result = doctor()
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "installed on 0 account(s)" in cross and "/installations/new" in result.output


def test_an_environment_without_the_rule_and_an_invalid_policy(doctor: Any) -> None:
    set_environment(doctor.state, "acme/shop", "production", [])
    doctor.state.set_file("acme/shop", "main", ".github/gonogo.yml", "environments: [not, a, mapping]\n")
    result = doctor("--repo", "acme/shop")
    assert result.exit_code == 1
    crosses = _crosses(result.output)
    assert len(crosses) == 2
    assert "guards no environment" in crosses[0] and "Deployment protection rules" in result.output
    assert ".github/gonogo.yml on main is invalid" in crosses[1] and "gonogo policy validate" in result.output


def test_a_repository_the_app_is_not_installed_on(doctor: Any) -> None:
    result = doctor("--repo", "globex/billing")
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert "globex/billing: the app is not installed there" in cross


@pytest.mark.parametrize(("method", "path", "status", "needle", "still_checked"), [
    ("GET", "/app/hook/config", 502, "could not read the app's webhook configuration", "installed on 1 account(s)"),
    ("GET", "/app/hook/deliveries", 503, "could not read the app's recent webhook deliveries", "installed on 1 account(s)"),
    ("GET", "/app/installations", 502, "could not list the app's installations", "acme/shop: gonogo guards production"),
    ("GET", "/installation/repositories", 403, "could not list its repositories", "acme/shop: gonogo guards production"),
    ("GET", "/repos/acme/shop/environments", 403, "acme/shop: could not list its environments",
     ".github/gonogo.yml on main is a valid policy"),
    ("GET", "/repos/acme/shop/environments/*/deployment_protection_rules", 403,
     "acme/shop: could not list its environments", ".github/gonogo.yml on main is a valid policy"),
])  # fmt: skip
def test_a_github_call_that_fails_is_a_cross_and_the_other_checks_still_run(
    doctor: Any, method: str, path: str, status: int, needle: str, still_checked: str
) -> None:
    # a permission the installation lacks, an outage or a rate limit: doctor exists to say which
    doctor.state.inject(method, path, "status", status=status, times=None)
    result = doctor("--repo", "acme/shop", GONOGO_GITHUB_RETRIES="0")
    assert result.exit_code == 1
    [cross] = _crosses(result.output)
    assert needle in cross and str(status) in cross
    assert still_checked in result.output


def test_an_api_url_that_is_not_githubs_api_is_named_as_the_suspect(doctor: Any, free_tcp_port: int) -> None:
    # a host that does not answer, or GitHub Enterprise Server without /api/v3: the key is not the (only) suspect
    unreachable = doctor(GONOGO_GITHUB_API_URL=f"http://127.0.0.1:{free_tcp_port}", GONOGO_GITHUB_RETRIES="0")
    [cross] = _crosses(unreachable.output)
    assert f"could not reach GitHub at http://127.0.0.1:{free_tcp_port}" in cross
    assert "GONOGO_GITHUB_API_URL" in unreachable.output and "Private keys" not in unreachable.output
    wrong_path = doctor(GONOGO_GITHUB_API_URL=doctor.state.api_url + "/nope", GONOGO_GITHUB_RETRIES="0")
    [cross] = _crosses(wrong_path.output)
    assert "404" in cross and "https://HOST/api/v3" in wrong_path.output
