"""Long-lived resources handlers use (GitHub client factory, risk model), built once per process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Engine

from github_app.settings import Settings


@contextlib.asynccontextmanager
async def default_services(settings: Settings, engine: Engine) -> AsyncIterator[dict[str, Any]]:
    """Build the services of a production process and close them on exit."""
    from github_app.github import GitHubClients

    services: dict[str, Any] = {}
    if settings.app_id and settings.private_key is not None:
        services["github"] = GitHubClients(settings)
    try:
        yield services
    finally:
        if "github" in services:
            await services["github"].aclose()
