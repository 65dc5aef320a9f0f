"""Insights reports shared by window and kept fresh in the background (``insights.ReportCache``).

A report of a year of 100,000 deployments takes seconds to compute; the dashboard and the API must
answer at once. The cache serves a report younger than ``ttl``; with its background thread running it
serves one asked for within ``keep`` at once while it recomputes it, keeps the dashboard's windows
ready whether anyone looks or not, and computes anything else once however many callers ask for it.
The reports are the real ones (``insights.report`` over a seeded database); only the clock is the
test's, so the ages are exact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from github_app import db, insights
from github_app.app import create_app
from github_app.insights import Report, ReportCache, Window
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.insights_data import seed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """The real report, counted (and held back or failed when a test says so)."""

    def __init__(self) -> None:
        self.calls: list[Window] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self, engine: Engine, window: Window) -> Report:
        self.calls.append(window)
        assert self.gate.wait(10), "held back too long"
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        return insights.report(engine, window)


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the background refresh did not happen"
        time.sleep(0.01)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    seed(eng, deployments=12, days=5, now=datetime.now(UTC))
    yield eng
    eng.dispose()


def test_a_live_window_is_one_report_from_minute_to_minute() -> None:
    now = datetime(2026, 12, 7, 15, 0, 30, tzinfo=UTC)
    later = now + timedelta(minutes=3)
    key = ReportCache.key
    assert key(insights.window_from("30d", None, now)) == key(insights.window_from("30d", None, later))
    assert key(insights.window_from(None, None, now)) == key(insights.window_from("30d", None, later))
    assert key(insights.window_from("7d", None, now)) != key(insights.window_from("30d", None, now))
    assert key(insights.window_from("30d", None, now, repository="o/r")) != key(insights.window_from("30d", None, now))
    # a start given as a date stays where it is; an end given is a window of its own
    dated = insights.window_from("2026-11-01", None, now)
    assert key(dated) == key(insights.window_from("2026-11-01", None, later))
    renewed = dated.renewed(later)
    assert renewed.since == dated.since and renewed.until == datetime(2026, 12, 7, 15, 4, tzinfo=UTC)
    age = insights.window_from("30d", None, now).renewed(later)
    assert age.until - age.since == timedelta(days=30) and age.until == renewed.until
    closed = insights.window_from("30d", "2026-12-01", now)
    assert not closed.live and key(closed) == closed and closed.renewed(later) is closed
    assert key(closed) != key(insights.window_from("30d", "2026-12-02", now))


def test_a_fresh_report_is_shared_and_without_the_thread_nothing_older_than_ttl_is_served(engine: Engine) -> None:
    clock, counted = Clock(), Counted()
    cache = ReportCache(engine, ttl=60, keep=900, compute=counted, clock=clock)
    now = datetime.now(UTC)
    first = cache.get(insights.window_from("7d", None, now))
    seed(engine, deployments=3, days=1, now=now, seed_value=8)
    clock.now += 59
    assert cache.get(insights.window_from("7d", None, now + timedelta(minutes=1))) is first
    clock.now += 2  # 61 s old, and no background thread to recompute it: the caller waits for a fresh one
    fresh = cache.get(insights.window_from("7d", None, now))
    assert len(counted.calls) == 2 and first.gate.deployments == 12 and fresh.gate.deployments == 15


def test_a_stale_report_is_served_at_once_and_recomputed_in_the_background(engine: Engine) -> None:
    clock, counted = Clock(), Counted()
    cache = ReportCache(engine, ttl=60, keep=900, compute=counted, clock=clock)
    cache.start()
    try:
        now = datetime.now(UTC)
        window = insights.window_from("7d", None, now)
        first = cache.get(window)
        seed(engine, deployments=3, days=1, now=now, seed_value=8)
        clock.now += 300
        counted.gate.clear()  # the refresh waits until the stale report has been served
        assert cache.get(window) is first and first.gate.deployments == 12
        counted.gate.set()
        _until(lambda: cache.get(window) is not first)
        assert cache.get(window).gate.deployments == 15 and len(counted.calls) == 2
        # the live window was renewed to end at the current minute, not the one it was first asked for
        assert counted.calls[1].until >= window.until and counted.calls[1].until - counted.calls[1].since == timedelta(days=7)
        # asked for again after keep: nothing that old is served, the caller waits for a fresh report
        seed(engine, deployments=2, days=1, now=now, seed_value=9)
        clock.now += 901
        assert cache.get(window).gate.deployments == 17
    finally:
        cache.stop()
    assert not cache.running


def test_the_dashboards_windows_are_ready_before_anyone_asks_and_kept_fresh(engine: Engine) -> None:
    clock, counted = Clock(), Counted()
    cache = ReportCache(engine, ttl=60, keep=900, compute=counted, clock=clock)
    now = datetime.now(UTC)
    cache.pin([insights.window_from("7d", None, now), insights.window_from("30d", None, now)])
    cache.start()
    try:
        _until(lambda: len(counted.calls) == 2)
        ready = cache.get(insights.window_from("30d", None, now + timedelta(minutes=2)))
        assert len(counted.calls) == 2 and ready.gate.deployments == 12
        # nobody asks for a while: past keep / 2 the pinned windows are recomputed all the same
        seed(engine, deployments=3, days=1, now=now, seed_value=8)
        clock.now += 451
        cache.pin([])  # (wakes the thread up instead of waiting for its next round)
        _until(lambda: len(counted.calls) == 4)
        assert cache.get(insights.window_from("7d", None, now)).gate.deployments == 15
        assert len(counted.calls) == 4
        # a window nobody pinned and nobody asked for since keep is forgotten, not recomputed
        other = insights.window_from("3d", None, now)
        cache.get(other)
        clock.now += 901
        assert all(ReportCache.key(w) != ReportCache.key(other) for _, w in cache.due())
        assert ReportCache.key(other) not in cache._entries
    finally:
        cache.stop()


def test_callers_of_one_window_share_one_computation(engine: Engine) -> None:
    counted = Counted()
    cache = ReportCache(engine, ttl=60, compute=counted)
    window = insights.window_from("7d", None, datetime.now(UTC))
    counted.gate.clear()
    got: list[Report] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(window))) for _ in range(5)]
    for t in threads:
        t.start()
    _until(lambda: len(counted.calls) == 1)
    time.sleep(0.05)  # the other four are waiting on the first one's computation, not starting their own
    counted.gate.set()
    for t in threads:
        t.join(10)
    assert len(got) == 5 and all(r is got[0] for r in got) and len(counted.calls) == 1


def test_a_failed_computation_reaches_its_callers_and_the_next_call_tries_again(engine: Engine) -> None:
    counted = Counted()
    cache = ReportCache(engine, ttl=60, compute=counted)
    window = insights.window_from("7d", None, datetime.now(UTC))
    counted.fail = RuntimeError("database went away")
    with pytest.raises(RuntimeError, match="went away"):
        cache.get(window)
    assert cache.get(window).gate.deployments == 12 and len(counted.calls) == 2


def test_a_failed_background_refresh_keeps_the_report_and_says_so(engine: Engine,
                                                                  caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    clock, counted = Clock(), Counted()
    cache = ReportCache(engine, ttl=60, keep=900, compute=counted, clock=clock)
    window = insights.window_from("7d", None, datetime.now(UTC))
    first = cache.get(window)
    clock.now += 120
    cache.get(window)  # (no thread: computed on the call)
    clock.now += 120
    counted.fail = RuntimeError("database went away")
    with caplog.at_level(logging.WARNING, logger="github_app.insights"):
        assert cache.refresh_due() == 0
    assert any(r.message == "insights.refresh_failed" for r in caplog.records)
    assert "went away" not in caplog.text  # the error's kind, not its text (it may hold a connection string)
    kept = cache._entries[ReportCache.key(window)].report
    assert kept is not first and kept.gate.deployments == 12
    assert cache.refresh_due() == 1


def test_ttl_zero_shares_nothing_and_starts_no_thread(engine: Engine) -> None:
    counted = Counted()
    cache = ReportCache(engine, ttl=0, keep=900, compute=counted)
    cache.start()
    window = insights.window_from("7d", None, datetime.now(UTC))
    assert cache.get(window) is not cache.get(window) and len(counted.calls) == 2 and not cache.running


def test_the_served_dashboard_has_its_windows_ready_and_says_how_old_they_are(database_url: str) -> None:
    """Through the app: with the dashboard on, its windows are computed at start-up, not on the first visit."""
    engine = db.make_engine(database_url)
    seed(engine, deployments=40, days=20)
    token = "report-cache-token-0123456789"
    settings = make_settings(database_url, dashboard_token=Secret(token), insights_keep_seconds=900.0)
    started = datetime.now(UTC)
    try:
        with ServerThread(create_app(settings, workers=0, engine=engine)) as srv, \
                httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as client:  # fmt: skip
            time.sleep(3.0)  # the background thread computes the menu's five windows meanwhile (ms each here)
            asked = datetime.now(UTC)
            body: dict[str, Any] = client.get("/api/v1/insights", params={"since": "365d"}).json()
            generated = datetime.fromisoformat(body["generated_at"])
            assert started <= generated < asked, "the 365-day report was computed on the request, not at start-up"
            page = client.get("/dashboard/insights", params={"window": "90d"})
            assert page.status_code == 200 and "Figures as of " in page.text
            assert f"{generated:%Y-%m-%d}" in page.text
            # a window outside the menu is computed when asked for
            other = client.get("/api/v1/insights", params={"since": "12d"}).json()
            assert datetime.fromisoformat(other["generated_at"]) >= asked
    finally:
        engine.dispose()
