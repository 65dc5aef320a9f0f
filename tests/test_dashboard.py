"""GET /dashboard over HTTP: off by default, behind a token, escaped, and showing what waits on whom."""

from __future__ import annotations

import base64
import re
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
HEADERS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


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


def _seeded_server(database_url: str, deployments: int = 120):  # type: ignore[no-untyped-def]
    from tests.insights_data import seed

    engine = db.make_engine(database_url)
    seeded = seed(engine, deployments=deployments, days=60)
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    return engine, seeded, ServerThread(create_app(settings, workers=0, engine=engine))


def test_insights_page_draws_accessible_charts_with_their_data(database_url):
    engine, _, server = _seeded_server(database_url)
    with server as srv:
        page = httpx.get(f"{srv.url}/dashboard/insights", headers=_basic(TOKEN), params={"window": "90d"})
        narrowed = httpx.get(f"{srv.url}/dashboard/insights", headers=_basic(TOKEN),
                             params={"window": "90d", "repository": "acme/search", "environment": "staging"})
        bad = httpx.get(f"{srv.url}/dashboard/insights", headers=_basic(TOKEN), params={"window": "forever"})
        anonymous = httpx.get(f"{srv.url}/dashboard/insights")
    engine.dispose()
    assert page.status_code == 200 and page.headers["content-security-policy"] == HEADERS_CSP
    assert page.text.count("<svg ") == 5 and "<script" not in page.text
    for chart in ("c-weekly", "c-cfr", "c-lead", "c-cal", "c-answers"):
        assert f'aria-labelledby="{chart}-t {chart}-d"' in page.text and f'<title id="{chart}-t">' in page.text
    assert page.text.count("<details><summary>") == 5  # every chart's numbers as a table
    assert "deployments requested" in page.text and "change failure rate" in page.text
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from elsewhere
    # one repository and environment: its column only, and 20 of the 120 deployments
    head = narrowed.text.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "acme/search → staging" in head and "acme/shop" not in head
    assert "<th scope=row>deployments requested</th><td>20</td><td>20</td>" in narrowed.text
    assert bad.status_code == 400 and "30d" in bad.text
    assert anonymous.status_code == 401


def test_deployment_pages_are_linked_paginated_and_filtered(database_url):
    engine, _, server = _seeded_server(database_url)
    with server as srv, httpx.Client(base_url=srv.url, headers=_basic(TOKEN)) as c:
        first = c.get("/dashboard/deployments", params={"window": "90d"})
        older_href = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
        second = c.get(older_href)
        filtered = c.get("/dashboard/deployments", params={"window": "90d", "repository": "acme/shop"})
        links = re.findall(r'href="(/dashboard/deployments/\d+)"', first.text)
        detail = c.get(links[0])
        overview = c.get("/dashboard")
        missing = c.get("/dashboard/deployments/987654")
    engine.dispose()
    assert len(links) == 50 and len(re.findall(r'href="/dashboard/deployments/\d+"', second.text)) == 50
    assert set(links).isdisjoint(re.findall(r'href="(/dashboard/deployments/\d+)"', second.text))
    assert "← Newest" in second.text
    assert filtered.text.count("acme/shop#") == 40 and "acme/payments#" not in filtered.text
    for section in ("Decision", "Findings", "Risk drivers", "Reviews", "Outcomes", "Audit entries"):
        assert f"<h2>{section}</h2>" in detail.text
    assert "Verdict" in detail.text or "verdict" in detail.text.lower()
    assert "readiness" in detail.text.lower() and "Rollout strategy" in detail.text
    assert re.search(r'href="/dashboard/deployments/\d+"', overview.text.split("<h2>Recent deployments</h2>")[1])
    assert missing.status_code == 404


def test_the_deployment_page_escapes_what_it_shows(database_url):
    hostile = '<script>alert("x")</script>'
    engine = db.make_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        row_id = conn.execute(insert(Deployment).values(
            key="k<b>", repository="o/r", environment=hostile, sha="a" * 40, run_id=1, created_at=now,
            creator='"><img src=x onerror=alert(1)>', answer_comment=hostile,
        ).returning(Deployment.id)).scalar_one()  # fmt: skip
    record_outcome(engine, repository="o/r", environment=hostile, sha="a" * 40, outcome="incident", source="alert",
                   source_key="alert:y", observed_at=now, detail={"alertname": "<iframe src=//evil>"})  # fmt: skip
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0, engine=engine)) as srv:
        page = httpx.get(f"{srv.url}/dashboard/deployments/{row_id}", headers=_basic(TOKEN)).text
        overview = httpx.get(f"{srv.url}/dashboard", headers=_basic(TOKEN)).text
    engine.dispose()
    for html in (page, overview):
        assert "<script>" not in html and "<img" not in html and "<iframe" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "&lt;iframe src=//evil&gt;" in page
    assert f'href="/dashboard/deployments/{row_id}"' in overview  # the incident links to its deployment
