"""The Starlette application factory. Importing this module does nothing; ``create_app`` builds it all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from github_app import api, dashboard, db, inbox, insights
from github_app import metrics as gauges
from github_app.background import Background
from github_app.inbox import InboxWriter
from github_app.routing import Context, Router
from github_app.settings import Settings, SettingsError
from github_app.webhooks import ALERT_EVENT, AlertmanagerEndpoint, BodyBudget, WebhookEndpoint

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/github"
ALERT_PATH = "/webhooks/alertmanager"

ServiceFactory = Callable[[Settings, Engine], "contextlib.AbstractAsyncContextManager[dict[str, Any]]"]


def create_app(
    settings: Settings | None = None,
    *,
    router: Router | None = None,
    workers: int | None = None,
    services: ServiceFactory | None = None,
    engine: Engine | None = None,
    report_ttl: float | None = None,
) -> Starlette:
    """Build the gonogo web app; resources are created in the lifespan, not here.

    ``report_ttl``: how long an insights report (and the filter menus) is shared, in seconds, instead of
    ``settings.insights_refresh_seconds``; 0 computes every one afresh and keeps nothing fresh in the
    background (benchmarks/insights_pages.py --no-cache).
    """
    if settings is None:
        settings = Settings.from_env()
    if settings.webhook_secret is None and not settings.demo_mode:
        raise SettingsError(
            "GONOGO_WEBHOOK_SECRET is not set: set it to the webhook secret of the GitHub App "
            "(or set GONOGO_DEMO=1 to run without signature checks, for local demos only)."
        )
    if router is None:
        from github_app.features import default_router

        router = default_router()
    worker_count = settings.workers if workers is None else workers
    if services is None:
        import functools

        from github_app.services import default_services

        services = default_services if worker_count else functools.partial(default_services, risk=False)
    ttl = settings.insights_refresh_seconds if report_ttl is None else report_ttl
    allowed = router.events - {ALERT_EVENT}  # GitHub deliveries; Alertmanager has its own way in
    from github_app.features import alerts

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        own_engine = engine is None
        eng = engine or db.make_engine(settings.database_url)
        try:
            if db.is_sqlite(eng):
                await asyncio.to_thread(db.upgrade, eng)
                if worker_count:
                    released = await asyncio.to_thread(inbox.release_all_leases, eng)
                    if released:
                        log.info("inbox.recovered", extra={"deliveries": released})
            elif not await asyncio.to_thread(db.is_current, eng):
                log.warning("db.not_current", extra={"hint": "run `gonogo db upgrade`"})
            writer = InboxWriter(eng)
            writer.start()
            # shared by both intakes; never less than one whole body, which would refuse every large delivery
            held = settings.intake_buffer_bytes
            budget = BodyBudget(max(held, settings.max_body_bytes) if held else 4 * settings.max_body_bytes)
            endpoint = WebhookEndpoint(settings.webhook_secret, writer, allowed, settings.max_body_bytes,
                                       previous_secret=settings.webhook_secret_previous,
                                       body_timeout=settings.body_timeout_seconds, budget=budget)  # fmt: skip
            alert_endpoint = AlertmanagerEndpoint(
                settings.alertmanager_token, writer, settings.max_body_bytes, endpoint.rejected,
                body_timeout=settings.body_timeout_seconds, screen=alerts.screen, budget=budget,
            )
            async with services(settings, eng) as svc:
                ctx = Context(settings=settings, engine=eng, services=svc)
                background = Background(ctx, router, worker_count)
                pool = background.pool
                writer.on_stored.append(pool.wake)
                if worker_count:
                    background.start()
                    writer.taker = pool
                log.info(
                    "app.started",
                    extra={"workers": worker_count, "database": db.describe(settings.database_url),
                           "events": ",".join(sorted(allowed))},
                )  # fmt: skip
                reports = insights.ReportCache(eng, ttl=ttl, keep=settings.insights_keep_seconds)
                if settings.dashboard_token is not None:  # the dashboard's windows are ready before anyone asks
                    now = datetime.now(UTC)
                    reports.pin(insights.window_from(age, None, now) for age in dashboard.WINDOWS)
                    reports.start()
                try:
                    yield {"engine": eng, "endpoint": endpoint, "alert_endpoint": alert_endpoint, "pool": pool,
                           "ctx": ctx, "writer": writer, "insights": reports,
                           "redelivery": background.redelivery}  # fmt: skip
                finally:
                    await asyncio.to_thread(reports.stop)
                    await background.stop()
                    await writer.stop()
        finally:
            if own_engine:
                eng.dispose()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> JSONResponse:
        eng: Engine = request.state.engine
        try:
            current = await asyncio.to_thread(db.is_current, eng)
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return JSONResponse({"ready": False, "reason": f"database unreachable: {type(exc).__name__}"}, 503)
        if not current:
            return JSONResponse({"ready": False, "reason": "migrations pending: run `gonogo db upgrade`"}, 503)
        return JSONResponse({"ready": True})

    async def metrics(request: Request) -> Response:
        endpoint = request.state.endpoint
        snapshot = await asyncio.to_thread(
            gauges.take, request.state.engine, endpoint.rejected, request.state.pool.processed,
            endpoint.previous_secret_used, redelivery=request.state.redelivery.counts,
        )  # fmt: skip
        if gauges.wants_prometheus(request.headers.get("accept", ""), request.query_params.get("format")):
            return Response(gauges.as_prometheus(snapshot), media_type=gauges.PROMETHEUS_CONTENT_TYPE)
        return JSONResponse(gauges.as_json(snapshot))

    return GonogoApp(
        routes=[
            Route(WEBHOOK_PATH, _FromState("endpoint"), methods=["POST"]),
            Route(ALERT_PATH, _FromState("alert_endpoint"), methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *dashboard.routes(),
            *api.routes(),
        ],
        lifespan=lifespan,
    )


class _FromState:
    """A route to an ASGI endpoint built in the lifespan (kept in the app state under ``name``).

    A class, not a function: Starlette treats a plain function given to ``Route`` as a
    request/response handler, while an object is called as an ASGI app, so no Request is built.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["state"][self.name](scope, receive, send)


class GonogoApp(Starlette):
    """Starlette, with webhook deliveries handed straight to the intake.

    Deliveries are nearly all the traffic and their handler needs neither the middleware stack nor
    routing, so an exact ``POST /webhooks/github`` skips both; everything else (and a delivery
    arriving before start-up finished) takes the normal route to the same endpoint.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            endpoint = scope.get("state", {}).get("endpoint")
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
