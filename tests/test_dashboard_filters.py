"""The overview's filters apply to every list on it, the failed gates included."""

from __future__ import annotations

import base64

import httpx

from github_app.settings import Secret
from tests.world import running_world

TOKEN = "dashboard-token-0123456789"


def test_a_failed_gate_of_another_repository_is_not_shown_under_a_repository_filter(database_url: str) -> None:
    with running_world(database_url, dashboard_token=Secret(TOKEN)) as world:
        world.request_gate("unknown-installation")  # globex/billing: its delivery goes dead, its gate failed
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        auth = {"Authorization": "Basic " + base64.b64encode(f"rita:{TOKEN}".encode()).decode()}

        def failures(**params: str) -> str:
            page = httpx.get(f"{world.app_url}/dashboard", params=params, headers=auth).text
            section = page[page.index("Failures, rollbacks and incidents"):]
            return section[: section.index("<h2>", 10)]

        assert "gate failed" in failures() and "globex/billing" in failures(repository="globex/billing")
        assert "gate failed" not in failures(repository="acme/shop"), failures(repository="acme/shop")
        assert "gate failed" not in failures(environment="no-such-environment")
