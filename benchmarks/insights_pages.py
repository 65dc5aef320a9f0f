"""Dashboard and API latency with a large history: p50/p95 per page on PostgreSQL.

Seeds a fresh schema on the local PostgreSQL with N deployments spread over a year (decisions,
reviews, outcomes, history rows and audit entries; the whole ~30 kB decision for 1 in 100, the
headline fields for the rest), runs the app in this process over real HTTP and times R sequential
requests to each page after a warm-up. Target: p95 under 200 ms with 100,000 deployments.

Insights pages share a report per window for a minute; rows marked "cold" give each request a
window of its own (an ``until`` for the API, a ``window`` age in minutes for the dashboard), so every
one of them computes its report from the database. With ``--no-cache`` the app shares nothing
(``create_app(report_ttl=0)``): every request to every page computes its report and filter menus
afresh, and the rows say "no cache".

With ``--served`` it times the insights pages as a visitor meets them instead: the app runs with its
background refresh on (``GONOGO_INSIGHTS_KEEP_SECONDS``) and the dashboard's five windows pinned; after
start-up it views every menu window on the dashboard and the API, waits until every report is older
than the refresh interval (``--ttl``, short so the run is short), views them all again, and so on for
``--rounds`` rounds: every view of a stale report is served at once while the background recomputes it.

    python benchmarks/insights_pages.py [--deployments 100000] [--requests 40]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--keep | --schema SCHEMA]
        [--no-cache | --served [--ttl 5] [--rounds 4] | --in-process 7,30,90,180,365]
        [--only insights,gate-quality,dora]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from github_app import db
from github_app.app import create_app
from github_app.db.models import Deployment
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import make_settings
from tests.insights_data import seed

TOKEN = "benchmark-token-0123456789"


def pages(row_id: int, cursor: str) -> list[str]:
    return [
        "/dashboard",
        "/dashboard/insights",
        "/dashboard/insights?window=90d",
        "/dashboard/insights?window=180d",
        "/dashboard/insights?window=365d",
        "/dashboard/insights?repository=acme/shop&environment=production",
        "/dashboard/deployments",
        f"/dashboard/deployments?window=365d&cursor={cursor}",
        "/dashboard/deployments?repository=acme/payments&environment=staging&window=365d",
        f"/dashboard/deployments/{row_id}",
        "/api/v1/deployments?limit=100",
        f"/api/v1/deployments?cursor={cursor}",
        f"/api/v1/deployments/{row_id}",
        "/api/v1/escalations",
        "/api/v1/gate-quality",
        "/api/v1/dora?environment=production",
        "/api/v1/insights",
    ]


COLD = ["/dashboard/insights", "/dashboard/insights?repository=acme/shop&environment=production",
        "/api/v1/gate-quality", "/api/v1/dora?repository=acme/shop&environment=production", "/api/v1/insights",
        "/api/v1/insights?since=90d", "/api/v1/dora?since=365d&environment=production"]  # fmt: skip


def _timed(client: httpx.Client, paths: list[str]) -> list[float]:
    times = []
    for path in paths:
        t0 = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return sorted(times)


def _p95(times: list[float]) -> float:
    """Nearest-rank 95th percentile of sorted ``times``."""
    return times[max(0, -(-len(times) * 95 // 100) - 1)]


def _row(label: str, times: list[float]) -> float:
    p95 = _p95(times)
    shown = label if len(label) <= 78 else label[:75] + "..."
    print(f"{shown:78} {statistics.median(times):7.1f} {p95:7.1f} {times[-1]:7.1f}")
    return p95


def _in_process(args: argparse.Namespace, engine: Any) -> None:
    """Each window's report computed in this process, ``--requests`` times: median and fastest."""
    from github_app import insights

    print(f"{'report over all repositories':32} {'median ms':>10} {'min ms':>8} {'deployments':>12}")
    for days in args.in_process.split(","):
        times = []
        for _ in range(args.requests):
            window = insights.window_from(f"{days}d", None, datetime.now(UTC))
            started = time.perf_counter()
            report = insights.report(engine, window)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{days + ' days':32} {statistics.median(times):10.0f} {min(times):8.0f} {report.gate.deployments:12}")


def _served(args: argparse.Namespace, url: str, engine: Any) -> None:
    from github_app.dashboard import WINDOWS

    settings = make_settings(url, dashboard_token=Secret(TOKEN), insights_keep_seconds=900.0,
                             insights_refresh_seconds=args.ttl)  # fmt: skip
    app = create_app(settings, workers=0, engine=engine)
    paths = [p for w in WINDOWS for p in (f"/dashboard/insights?window={w}", f"/api/v1/insights?since={w}")]
    views: dict[str, list[float]] = {p: [] for p in paths}
    with ServerThread(app) as srv, \
            httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:  # fmt: skip
        started = time.perf_counter()
        _timed(client, [paths[-1]])  # waits for the start-up computation of the menu's windows, 365 days last
        print(f"menu windows ready {time.perf_counter() - started:.1f} s after start-up")
        for n in range(args.rounds):
            if n:
                time.sleep(args.ttl + 0.5)  # every report is now due: views meet stale ones
            for path in paths:
                views[path] += _timed(client, [path])
        print(f"{'page (first view after start-up; all ' + str(args.rounds) + ' views)':78} "
              f"{'first':>7} {'p50 ms':>7} {'max ms':>7}")  # fmt: skip
        for path, times in views.items():
            shown = path if len(path) <= 78 else path[:75] + "..."
            print(f"{shown:78} {times[0]:7.1f} {statistics.median(times):7.1f} {max(times):7.1f}")
        every = sorted(t for times in views.values() for t in times)
        print(f"all {len(every)} views: p95 {_p95(every):.1f} ms, "
              f"max {every[-1]:.1f} ms (target p95 < 200 ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--cold", type=int, default=10, help="requests per insights page with no shared report")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the seeded schema (printed) for a later look")
    parser.add_argument("--schema", default=None, help="time an already seeded schema (kept by --keep) instead")
    parser.add_argument("--no-cache", action="store_true", help="share no report between requests (report_ttl=0)")
    parser.add_argument("--served", action="store_true", help="the insights pages as visitors meet them (see above)")
    parser.add_argument("--ttl", type=float, default=5.0, help="--served: the refresh interval, in seconds")
    parser.add_argument("--rounds", type=int, default=4, help="--served: rounds of views, one refresh interval apart")
    parser.add_argument("--in-process", default="", metavar="AGES",
                        help="time insights.report itself for these windows (e.g. 7,30,90,180,365 days), no HTTP")
    parser.add_argument("--only", default="", help="time only the pages whose path contains one of these texts "
                        "(comma-separated), e.g. insights,gate-quality,dora")
    args = parser.parse_args()

    schema = args.schema or f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    if not args.schema:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.postgres else "?"
    url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        if not args.schema:
            started = time.perf_counter()
            seeded = seed(engine, deployments=args.deployments, days=365, full_decision_every=100)
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            print(f"seeded {seeded.deployments} deployments in {time.perf_counter() - started:.1f} s (schema {schema})")
        with engine.connect() as conn:
            # a deployment with the whole decision, near the newest end
            row_id = conn.execute(select(Deployment.id).where(Deployment.id % 100 == 1)
                                  .order_by(Deployment.id.desc()).limit(1)).scalar_one()  # fmt: skip
        if args.in_process:
            _in_process(args, engine)
            return
        if args.served:
            _served(args, url, engine)
            return
        settings = make_settings(url, dashboard_token=Secret(TOKEN))
        app = create_app(settings, workers=0, engine=engine, report_ttl=0 if args.no_cache else 60.0)
        suffix = " (no cache)" if args.no_cache else ""
        with ServerThread(app) as srv, \
                httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:  # fmt: skip
            cursor = client.get("/api/v1/deployments", params={"limit": 200}).json()["next_cursor"]
            print(f"{'page':78} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
            worst = 0.0
            for path in pages(row_id, cursor):
                if args.only and not any(part in path for part in args.only.split(",")):
                    continue
                _timed(client, [path] * 3)
                worst = max(worst, _row(path + suffix, _timed(client, [path] * args.requests)))
            print(f"worst p95: {worst:.1f} ms (target < 200 ms)")
            cold_worst = 0.0
            now = datetime.now(UTC)
            for p, path in enumerate(COLD if not args.no_cache else ()):
                sep = "&" if "?" in path else "?"
                # a distinct window end per request, and per page (no page reads a report another one made)
                if path.startswith("/dashboard"):  # the pages take an age: 30 days give or take some minutes
                    uniques = [f"{path}{sep}window={43200 - 1 - p * args.cold - n}m" for n in range(args.cold)]
                else:
                    uniques = [f"{path}{sep}until={(now - timedelta(minutes=p * args.cold + n + 1)):%Y-%m-%dT%H:%M:%SZ}"
                               for n in range(args.cold)]  # fmt: skip
                cold_worst = max(cold_worst, _row(f"{path} (cold)", _timed(client, uniques)))
            if not args.no_cache:
                print(f"worst cold p95: {cold_worst:.1f} ms")
    finally:
        engine.dispose()
        if not args.keep and not args.schema:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
