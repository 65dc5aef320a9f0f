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


def test_the_api_lists_a_failed_gate_as_failed_as_its_detail_and_the_overview_do(database_url: str) -> None:
    """A deployment whose delivery went dead is "failed" everywhere (docs: views.STATES), the API's list and
    its state filter included, not "evaluating" for ever."""
    with running_world(database_url, dashboard_token=Secret(TOKEN)) as world:
        world.request_gate("unknown-installation")
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        with httpx.Client(base_url=world.app_url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            _check_failed(api)


def _check_failed(api: httpx.Client) -> None:
    (item,) = [i for i in api.get("/api/v1/deployments").json()["items"] if i["repository"] == "globex/billing"]
    assert api.get(item["url"]).json()["state"] == "failed"
    assert item["state"] == "failed"
    assert [i["id"] for i in api.get("/api/v1/deployments", params={"state": "failed"}).json()["items"]] == [item["id"]]
    assert item["id"] not in [i["id"] for i in api.get("/api/v1/deployments", params={"state": "evaluating"}).json()["items"]]
