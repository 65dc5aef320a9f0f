"""A deployment whose delivery went dead is shown as failed, with the error and the command that retries it."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from click.testing import CliRunner

from github_app.cli import cli
from github_app.settings import Secret
from tests.world import running_world

TOKEN = "dashboard-token-0123456789"


def _gonogo(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, [*args, "--database-url", database_url], catch_exceptions=False)


def test_dead_delivery_shows_its_deployment_as_failed_everywhere(database_url):
    with running_world(database_url, dashboard_token=Secret(TOKEN)) as world:
        world.request_gate("unknown-installation")
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
        retry = f"gonogo deliveries retry {dead.id}"

        listed = _gonogo(database_url, "deployments", "list")
        assert listed.exit_code == 0, listed.output
        [row] = [line for line in listed.stdout.splitlines() if "globex/billing#8004" in line]
        assert " failed " in row and "evaluating" not in row
        assert "Installation not found" in row and retry in row

        only_failed = _gonogo(database_url, "deployments", "list", "--state", "failed")
        assert "globex/billing#8004" in only_failed.stdout
        assert "globex/" not in _gonogo(database_url, "deployments", "list", "--state", "evaluating").stdout

        shown = _gonogo(database_url, "deployments", "show", "globex/billing#8004")
        assert shown.exit_code == 0, shown.output
        assert "No decision recorded yet" not in shown.stdout
        assert "state failed" in shown.stdout and "Installation not found" in shown.stdout and retry in shown.stdout

        auth = {"Authorization": "Basic " + base64.b64encode(f"rita:{TOKEN}".encode()).decode()}
        page = httpx.get(f"{world.app_url}/dashboard", headers=auth).text
        failures = page[page.index("Failures, rollbacks and incidents"):]
        assert "None recorded." not in failures[:failures.index("<h2>", 10)]
        assert "gate failed" in failures and retry in failures
