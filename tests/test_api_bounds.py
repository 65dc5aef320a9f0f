"""Out-of-range ids, cursors, dates and filter text get a 400 or 404 that says why, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from github_app import db
from github_app.app import create_app
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.insights_data import seed

TOKEN = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(database_url: str) -> Iterator[str]:
    engine = db.make_engine(database_url)
    seed(engine, deployments=10, days=5)
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0, engine=engine)) as srv:
        yield srv.url
    engine.dispose()


def _cursor(moment: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([moment, row_id]).encode()).decode().rstrip("=")


HUGE = 10**30


@pytest.mark.parametrize(("path", "params", "status"), [
    (f"/api/v1/deployments/{HUGE}", {}, 404),
    (f"/api/v1/deployments/{2**63}", {}, 404),
    ("/api/v1/deployments", {"cursor": _cursor("2026-01-01T00:00:00+00:00", HUGE)}, 400),
    ("/api/v1/deployments", {"cursor": _cursor("2026-01-01T00:00:00+00:00", -(2**63) - 1)}, 400),
    ("/api/v1/deployments", {"repository": "acme/\x00shop"}, 400),
    ("/api/v1/escalations", {"environment": "prod\x00"}, 400),
    ("/api/v1/dora", {"repository": "acme/\x00shop"}, 400),
    ("/api/v1/dora", {"until": "9999-12-31"}, 400),
    ("/api/v1/dora", {"since": "0001-01-01", "until": "0001-02-01"}, 400),
    ("/api/v1/insights", {"since": "99999999d"}, 400),
    (f"/dashboard/deployments/{HUGE}", {}, 404),
    ("/dashboard/deployments", {"cursor": _cursor("2026-01-01T00:00:00+00:00", HUGE)}, 400),
    ("/dashboard", {"environment": "prod\x00"}, 400),
    ("/dashboard/insights", {"repository": "acme/\x00shop"}, 400),
])  # fmt: skip
def test_out_of_range_input_is_refused_not_a_server_error(server: str, path: str, params: dict[str, str],
                                                          status: int) -> None:  # fmt: skip
    # a fresh connection per request: a 500 closes the connection, which must not blame the next case
    response = httpx.get(server + path, params=params, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.text.strip() and "Internal Server Error" not in response.text
