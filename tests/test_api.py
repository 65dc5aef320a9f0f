"""GET /api/v1 over HTTP: every live response matches the OpenAPI description; pages, token, origin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator

from github_app import db, insights
from github_app.api import openapi
from github_app.app import create_app
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.insights_data import seed

TOKEN = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[str, Any]]:
    engine = db.make_engine(database_url)
    seeded = seed(engine, deployments=150, days=60)
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0, engine=engine)) as srv:
        yield srv.url, seeded
    engine.dispose()


def _validator(name: str) -> OAS31Validator:
    spec = openapi()
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


def _check(response: httpx.Response, schema: str, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store" and response.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    _validator(schema).validate(body)
    return body


def test_every_response_matches_the_openapi_description(api: tuple[str, Any]) -> None:
    url, seeded = api
    spec = httpx.get(f"{url}/api/v1/openapi.json", headers=AUTH).json()
    assert spec == openapi() and spec["openapi"] == "3.1.0"
    with httpx.Client(base_url=url, headers=AUTH) as c:
        listing = _check(c.get("/api/v1/deployments", params={"limit": 20}), "DeploymentPage")
        assert len(listing["items"]) == 20 and listing["next_cursor"]
        first = listing["items"][0]
        assert datetime.fromisoformat(first["created_at"]).tzinfo is not None
        one = _check(c.get(first["url"]), "DeploymentDetail")
        assert one["id"] == first["id"] and one["decision"]["verdict"] == first["verdict"]
        assert one["audit"] and one["audit"][0]["kind"] == "decision"
        waiting = _check(c.get("/api/v1/escalations"), "EscalationPage")
        assert len(waiting["items"]) == seeded.escalated_waiting
        assert all(i["answer"] is None and i["action"] == "escalate" for i in waiting["items"])
        gate = _check(c.get("/api/v1/gate-quality", params={"since": "61d"}), "GateQualityFigures")
        assert gate["overall"]["deployments"] == 150 and len(gate["groups"]) == 6
        dora = _check(c.get("/api/v1/dora", params={"repository": "acme/shop", "environment": "production"}),
                      "DoraFigures")  # fmt: skip
        assert dora["window"]["repository"] == "acme/shop" and [g["environment"] for g in dora["groups"]] == ["production"]
        everything = _check(c.get("/api/v1/insights", params={"since": "2026-01-01", "until": "2026-02-01"}), "Report")
        assert everything["window"]["since"] == "2026-01-01T00:00:00+00:00"
        _check(c.get("/api/v1/deployments/999999"), "Error", 404)
        _check(c.get("/api/v1/deployments", params={"cursor": "not-ours"}), "Error", 400)
        _check(c.get("/api/v1/deployments", params={"limit": "0"}), "Error", 400)
        _check(c.get("/api/v1/dora", params={"since": "last tuesday"}), "Error", 400)
        _check(c.get("/api/v1/dora", params={"since": "800d"}), "Error", 400)
    _check(httpx.get(f"{url}/api/v1/dora"), "Error", 401)


def test_the_figures_are_those_of_the_shared_computation(api: tuple[str, Any], database_url: str) -> None:
    url, _ = api
    body = httpx.get(f"{url}/api/v1/insights", params={"since": "2026-01-01T00:00:00Z", "until": "2026-12-31"},
                     headers=AUTH).json()  # fmt: skip
    engine = db.make_engine(database_url)
    window = insights.window_from("2026-01-01T00:00:00Z", "2026-12-31", datetime.now(UTC))
    direct = insights.report(engine, window).to_json()
    engine.dispose()
    for figures in (body, direct):  # the only figure that moves with the clock
        figures["gate_quality"].pop("oldest_waiting_seconds")
    for key in ("gate_quality", "dora", "weeks", "answer_times"):
        assert body[key] == direct[key]
    assert body["gate_quality"]["deployments"] == 150


def test_cursor_pages_cover_every_row_once_in_order(api: tuple[str, Any]) -> None:
    url, _ = api
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=url, headers=AUTH) as c:
        while True:
            params: dict[str, Any] = {"limit": 40, "repository": "acme/payments"}
            if cursor:
                params["cursor"] = cursor
            body = c.get("/api/v1/deployments", params=params).json()
            seen += body["items"]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == 50 and len({d["id"] for d in seen}) == 50
    assert all(d["repository"] == "acme/payments" for d in seen)
    order = [(d["created_at"], d["id"]) for d in seen]
    assert order == sorted(order, reverse=True)


def test_token_and_origin_are_checked_before_anything_is_read(api: tuple[str, Any]) -> None:
    url, _ = api
    host = url.split("://", 1)[1]
    with httpx.Client(base_url=url) as c:
        anonymous = c.get("/api/v1/deployments")
        wrong = c.get("/api/v1/deployments", headers={"Authorization": "Bearer guess"})
        other_site = c.get("/api/v1/deployments", headers={**AUTH, "Origin": "https://evil.example"})
        null_origin = c.get("/api/v1/deployments", headers={**AUTH, "Origin": "null"})
        fetch_meta = c.get("/api/v1/deployments", headers={**AUTH, "Sec-Fetch-Site": "cross-site"})
        same_site = c.get("/api/v1/deployments", headers={**AUTH, "Origin": f"http://{host}",
                                                          "Sec-Fetch-Site": "same-origin"})  # fmt: skip
        preflight = c.options("/api/v1/deployments", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "GET"})  # fmt: skip
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="gonogo"'
    assert other_site.status_code == null_origin.status_code == fetch_meta.status_code == 403
    assert "Cross-origin" in other_site.json()["error"]
    assert same_site.status_code == 200
    assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers


def test_the_api_is_off_without_a_token(database_url: str) -> None:
    with ServerThread(create_app(make_settings(database_url), workers=0)) as srv:
        response = httpx.get(f"{srv.url}/api/v1/deployments", headers=AUTH)
    assert response.status_code == 404 and "GONOGO_DASHBOARD_TOKEN" in response.json()["error"]
