"""Long-lived resources handlers use (GitHub client factory, risk model), built once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine

from github_app.settings import Settings

log = logging.getLogger(__name__)

# Database work runs in threads (asyncio.to_thread). The default pool, cores + 4 threads, lets a handful of
# transactions waiting on SQLite's write lock or a PostgreSQL round trip hold up every other worker's
# queries and artifact parsing; the threads mostly wait, so a larger pool costs little.
BLOCKING_THREADS = 32


@contextlib.asynccontextmanager
async def default_services(settings: Settings, engine: Engine, *, risk: bool = True) -> AsyncIterator[dict[str, Any]]:
    """Build the services of a production process and close them on exit.

    ``risk=False`` leaves out the risk model and its retrainer: a web-only process (no workers)
    never decides, and loading pandas and scikit-learn would triple its memory for nothing.
    """
    from github_app.github import GitHubClients

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="gonogo-blocking"))
    services: dict[str, Any] = {}
    manifest_check = None
    if settings.app_id and settings.private_key is not None:
        services["github"] = GitHubClients(settings)
        if settings.check_manifest:
            from github_app.manifest import check_live_app

            # in the background: a slow or unreachable GitHub must not delay start-up
            manifest_check = loop.create_task(check_live_app(services["github"]))
    if risk and settings.risk_model:
        try:
            from github_app.risk_registry import Retrainer, RiskProvider

            services["risk"] = RiskProvider(engine, settings)
            services["retrain"] = Retrainer(engine, settings)
        except (ImportError, ValueError) as exc:  # without the model the gate keeps its rule-based risk
            log.warning("services.risk_unavailable", extra={"error": str(exc)})
    try:
        yield services
    finally:
        if manifest_check is not None and not manifest_check.done():
            manifest_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await manifest_check
        if "retrain" in services:
            await services["retrain"].aclose()
        if "github" in services:
            await services["github"].aclose()
