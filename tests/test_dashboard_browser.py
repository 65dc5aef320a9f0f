"""The dashboard in real headless Chromium (Debian's, driven by Playwright): sign-in, every page with
data from a seeded database, filters and links, no console error, nothing fetched from elsewhere, the
CSP enforced by the browser; a screenshot of each page is written (to a temporary folder, or to
docs/images/ with ``GONOGO_UPDATE_SCREENSHOTS=1``, so a plain test run leaves the checkout clean)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app import db
from github_app.app import create_app
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import ROOT, make_settings
from tests.insights_data import seed

CHROMIUM = Path(os.environ.get("GONOGO_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TOKEN = "browser-token-0123456789abcdef"
UPDATE_SCREENSHOTS = os.environ.get("GONOGO_UPDATE_SCREENSHOTS") == "1"
IMAGES = ROOT / "docs" / "images"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install -e '.[dev]'"
)
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does) or set GONOGO_CHROMIUM",
                allow_module_level=True)  # fmt: skip


class Watch:
    """What a page did: console errors, uncaught exceptions, every URL it requested."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))


@pytest.fixture
def site(database_url: str) -> Iterator[tuple[str, Any]]:
    engine = db.make_engine(database_url)
    seed(engine, deployments=400, days=70)
    settings = make_settings(database_url, dashboard_token=Secret(TOKEN))
    with ServerThread(create_app(settings, workers=0, engine=engine)) as srv, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield srv.url, browser
        finally:
            browser.close()
    engine.dispose()


def _signed_in(browser: Any) -> tuple[Any, Any, Watch]:
    context = browser.new_context(http_credentials={"username": "rita", "password": TOKEN},
                                  viewport={"width": 1280, "height": 900})  # fmt: skip
    page = context.new_page()
    return context, page, Watch(page)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/images/ when updating them, else a folder of the test's own."""
    return IMAGES if UPDATE_SCREENSHOTS else tmp_path


def _shot(page: Any, name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_sign_in_is_required(site: tuple[str, Any]) -> None:
    url, browser = site
    for credentials in (None, {"username": "rita", "password": "guess"}):
        context = browser.new_context(http_credentials=credentials)
        page = context.new_page()
        statuses: list[int] = []
        page.on("response", lambda r, seen=statuses: seen.append(r.status))
        try:
            response = page.goto(f"{url}/dashboard/insights")
        except sync_api.Error as exc:
            # headless Chromium has no sign-in prompt: it may give up on the challenge instead of showing the 401
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
        else:
            assert response is not None and response.status == 401 and "GONOGO_DASHBOARD_TOKEN" in page.content()
        assert statuses and set(statuses) == {401} and page.locator("svg").count() == 0
        context.close()
    context, page, watch = _signed_in(browser)
    response = page.goto(f"{url}/dashboard/insights")
    assert response is not None and response.status == 200 and watch.errors == []
    context.close()


def test_every_page_renders_links_and_filters_work_and_nothing_leaves_the_origin(site: tuple[str, Any], shots: Path) -> None:
    url, browser = site
    context, page, watch = _signed_in(browser)

    response = page.goto(f"{url}/dashboard")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.locator("h2", has_text="Recent deployments").is_visible()
    assert page.locator("main table").first.locator("tbody tr").count() > 0
    _shot(page, "overview", shots)

    page.get_by_role("link", name="Insights").click()
    page.wait_for_url("**/dashboard/insights")
    charts = page.locator("svg[role=img]")
    assert charts.count() == 5
    for i in range(5):
        assert charts.nth(i).bounding_box()["height"] > 100  # drawn, not collapsed
    assert page.get_by_text("change failure rate", exact=True).first.is_visible()
    _shot(page, "insights", shots)

    # filters: one repository and environment; the figures table narrows to it
    page.select_option("#f-repository", "acme/shop")
    page.select_option("#f-environment", "production")
    page.select_option("#f-window", "90d")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/dashboard/insights?repository=acme%2Fshop&environment=production&window=90d")
    head = page.locator("main table thead").first.inner_text()
    assert "acme/shop → production" in head and "acme/search" not in head

    # from the per-environment column to that environment's deployments, then page on
    page.locator("main table thead a", has_text="acme/shop → production").click()
    page.wait_for_url("**/dashboard/deployments?*")
    rows = page.locator("main table tbody tr")
    assert rows.count() == 50
    assert all(t.startswith("acme/shop#") and t.endswith("production") for t in rows.locator("td:first-child").all_inner_texts())
    first_page = rows.locator("td:first-child").all_inner_texts()
    _shot(page, "deployments", shots)
    page.get_by_role("link", name="Older →").click()
    page.wait_for_load_state()
    second_page = page.locator("main table tbody tr td:first-child").all_inner_texts()
    assert second_page and set(second_page).isdisjoint(first_page)

    # drill down from the list to one deployment
    page.locator("main table tbody tr td:first-child a").first.click()
    page.wait_for_url("**/dashboard/deployments/*")
    for section in ("Decision", "Findings", "Risk drivers", "Reviews", "Outcomes", "Audit entries"):
        assert page.get_by_role("heading", name=section, exact=True).is_visible()
    assert "Rollout strategy" in page.locator("pre").inner_text()
    _shot(page, "deployment", shots)

    # and from the overview's lists too
    page.goto(f"{url}/dashboard")
    page.locator("main table tbody tr td:first-child a").first.click()
    page.wait_for_url("**/dashboard/deployments/*")

    assert watch.errors == []
    origin = url.rstrip("/")
    assert watch.requests and all(r.startswith(origin + "/") for r in watch.requests), watch.requests
    context.close()


def test_the_browser_enforces_the_csp(site: tuple[str, Any]) -> None:
    url, browser = site
    context, page, watch = _signed_in(browser)
    page.goto(f"{url}/dashboard/insights")
    # an injected inline script and a stylesheet from elsewhere are both refused by the page's policy
    with pytest.raises(sync_api.Error):
        page.add_script_tag(content="window.ranInline = true")
    assert page.evaluate("() => window.ranInline === undefined")
    failed: list[tuple[str, str]] = []
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure or "")))
    page.evaluate("""() => { const l = document.createElement('link'); l.rel = 'stylesheet';
                             l.href = 'http://203.0.113.9/x.css'; document.head.appendChild(l); }""")
    page.wait_for_timeout(200)
    assert any("Content Security Policy" in e for e in watch.errors), watch.errors
    # Chromium reports the attempt, then fails it before anything goes on the wire
    assert [f for f in failed if f[0].startswith("http://203.0.113.9")] == [("http://203.0.113.9/x.css", "csp")]
    context.close()
