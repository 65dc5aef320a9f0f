"""Keep a record of where the app is installed (installation and installation_repositories events).

An uninstalled app can no longer answer for the installation: its unfinished deployments are abandoned.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from github_app import deployments
from github_app.db.models import Installation
from github_app.routing import Context, Event, Router

log = logging.getLogger(__name__)

router = Router()


@router.on("installation")
@router.on("installation_repositories")
async def record_installation(ctx: Context, ev: Event) -> None:
    """Upsert the installation named in the payload; idempotent."""
    inst = ev.payload.get("installation") or {}
    if not isinstance(inst.get("id"), int):
        return
    account = inst.get("account") or {}
    with Session(ctx.engine) as session, session.begin():
        row = session.scalar(select(Installation).where(Installation.id == inst["id"]))
        if row is None:
            row = Installation(id=inst["id"], updated_at=datetime.now(UTC))
            session.add(row)
        row.account_login = account.get("login")
        row.account_type = account.get("type")
        row.suspended = ev.action == "suspend" or (ev.action != "unsuspend" and bool(inst.get("suspended_at")))
        row.removed = ev.name == "installation" and ev.action == "deleted"
        row.updated_at = datetime.now(UTC)
    if ev.name == "installation" and ev.action == "deleted":
        abandoned = await asyncio.to_thread(deployments.abandon_uninstalled, ctx.engine, inst["id"])
        if abandoned:
            log.info("installation.deployments_abandoned", extra={"installation_id": inst["id"],
                                                                  "deployments": len(abandoned)})  # fmt: skip


@router.on("ping")
async def pong(ctx: Context, ev: Event) -> None:
    """GitHub's hello when the app or hook is created: nothing to do but acknowledge."""
