"""GET /dashboard over HTTP: off by default, behind a token, escaped, and showing what waits on whom."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert

from github_app import db
from github_app.app import create_app
from github_app.db.models import Deployment
from github_app.features.outcomes import record_outcome
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.scenarios import LABEL, REPO, release_state
from tests.test_escalation import POLICY
from tests.world import running_world

TOKEN = "dashboard-token-0123456789"


def _basic(password: str, user: str = "rita") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_dashboard_is_off_without_a_token(database_url):
    with ServerThread(create_app(make_settings(database_url), workers=0)) as srv:
        response = httpx.get(f"{srv.url}/dashboard", headers=_basic(TOKEN))
    assert response.status_code == 404 and "GONOGO_DASHBOARD_TOKEN" in response.json()["error"]


def test_sign_in_is_required_and_the_page_is_locked_down(database_url):
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0)) as srv:
        anonymous = httpx.get(f"{srv.url}/dashboard")
        wrong = httpx.get(f"{srv.url}/dashboard", headers=_basic("guess"))
        garbled = httpx.get(f"{srv.url}/dashboard", headers={"Authorization": "Basic %%%"})
        browser = httpx.get(f"{srv.url}/dashboard", headers=_basic(TOKEN))
        script = httpx.get(f"{srv.url}/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
        counted = httpx.get(f"{srv.url}/metrics").json()["rejected"]
    assert counted == {"dashboard_bad_token": 2}  # the wrong and the garbled password; not the bare first visit
    assert anonymous.status_code == wrong.status_code == garbled.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Basic realm="gonogo"')
    assert browser.status_code == script.status_code == 200
    assert browser.headers["content-security-policy"].startswith("default-src 'none'")
    assert browser.headers["x-frame-options"] == "DENY" and browser.headers["cache-control"] == "no-store"
    assert "No escalation is waiting." in browser.text and "No deployment yet." in browser.text


def test_an_escalation_shows_who_must_decide(database_url):
    state = release_state(checks_running=True, policy=POLICY, team_members=("rita", "dora"))
    with running_world(database_url, state, dashboard_token=Secret(TOKEN)) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        _, dep = world.state.deployment(LABEL)
        page = httpx.get(f"{world.app_url}/dashboard", headers=_basic(TOKEN)).text
    waiting = page.split("<h2>Waiting for a reviewer (1)</h2>", 1)[1].split("<h2>", 1)[0]
    assert f"{REPO}#{dep.run_id} → {dep.environment}" in waiting
    assert "@acme/sre" in waiting and dep.sha[:7] in waiting and 'class="escalate">escalate<' in waiting


def test_everything_shown_is_escaped(database_url):
    hostile = '<script>alert("x")</script>'
    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(Deployment).values(key="k1", repository="o/r", environment=hostile, sha="a" * 40,
                                               run_id=1, created_at=now))  # fmt: skip
    record_outcome(engine, repository="o/r", environment=hostile, sha="a" * 40, outcome="incident", source="alert",
                   source_key="alert:x", observed_at=now, detail={"alertname": "<img src=x onerror=alert(1)>"})  # fmt: skip
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0, engine=engine)) as srv:
        page = httpx.get(f"{srv.url}/dashboard", headers=_basic(TOKEN)).text
    engine.dispose()
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
