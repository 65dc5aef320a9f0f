"""Sandbox routes for the app's own webhook: its configuration, its deliveries and their redelivery.

GitHub keeps a log of every delivery it attempted to an app's webhook URL, lists it to the app (JWT)
newest first with cursor pagination, and re-sends a stored delivery (same GUID and body, signed
again, ``redelivery: true``) when the app asks for another attempt. The sandbox does the same with
deliveries made through :func:`deliver`. It also serves its own call log at ``/_sandbox/calls``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
from starlette.responses import Response

from github_app.sandbox.app import ApiError, Ctx, Handler, invalid, ok
from github_app.sandbox.hook_log import HookDelivery
from github_app.sandbox.state import SandboxState, iso
from github_app.sandbox.webhooks import webhook_request

# GitHub keeps deliveries for 3 days and lists at most 100 per page.
RETENTION_SECONDS = 3 * 86400
MAX_PER_PAGE = 100
CURSOR_PREFIX = "v1_"


def configure_hook(state: SandboxState, url: str | None, secret: str | None) -> None:
    """Set where the app's webhook deliveries go and the secret that signs them."""
    with state.lock:
        state.hook.url, state.hook.secret = url, secret


def deliver(state: SandboxState, event: str, payload: dict[str, Any] | bytes, *, guid: str | None = None,
            redelivery: bool = False, timeout: float = 10.0) -> HookDelivery:
    """POST one event to the app's webhook URL as GitHub does, and log the attempt whatever happens."""
    hook = state.hook
    if hook.url is None or hook.secret is None:
        raise ValueError("The app has no webhook URL and secret: call configure_hook(state, url, secret) first")
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    data = json.loads(body)
    app_id = state.app.id if state.app else None
    url, sent, headers = webhook_request(hook.url, hook.secret, event, body, guid or str(uuid.uuid4()),
                                         app_id=app_id, content_type=hook.content_type)
    record = HookDelivery(
        id=state.next_id(), guid=headers["X-GitHub-Delivery"], event=event, action=data.get("action"),
        installation_id=(data.get("installation") or {}).get("id"),
        repository_id=(data.get("repository") or {}).get("id"), body=body, delivered_at=state.now(),
        redelivery=redelivery,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        response = httpx.post(url, content=sent, headers=headers, timeout=timeout)
        record.status_code = response.status_code
        record.status = "OK" if response.is_success else f"Invalid HTTP Response: {response.status_code}"
        record.response_body = response.text[:4096]
    except httpx.TimeoutException:
        record.status = "timed out"
    except httpx.HTTPError:
        record.status = "failed to connect to host"
    record.duration = round(time.perf_counter() - started, 3)
    with state.lock:
        hook.deliveries.append(record)
    return record


def _item(d: HookDelivery) -> dict[str, Any]:
    return {
        "id": d.id, "guid": d.guid, "delivered_at": iso(d.delivered_at), "redelivery": d.redelivery,
        "duration": d.duration, "status": d.status, "status_code": d.status_code, "event": d.event,
        "action": d.action, "installation_id": d.installation_id, "repository_id": d.repository_id,
        "throttled_at": None,
    }  # fmt: skip


def _int_param(ctx: Ctx, name: str) -> int:
    try:
        return int(ctx.params[name])
    except ValueError:
        raise ApiError(404, "Not Found") from None


def get_hook_config(ctx: Ctx) -> Response:
    """GET /app/hook/config: the webhook URL and settings; the secret only as asterisks, as GitHub shows it."""
    hook = ctx.state.hook
    return ok({"url": hook.url or "", "content_type": hook.content_type, "insecure_ssl": hook.insecure_ssl,
               "secret": "********" if hook.secret else None})


def list_hook_deliveries(ctx: Ctx) -> Response:
    """GET /app/hook/deliveries: newest first, ``per_page`` up to 100, ``cursor`` from the Link header."""
    raw_per_page = ctx.q("per_page") or "30"
    if not raw_per_page.isdigit() or not 1 <= int(raw_per_page) <= MAX_PER_PAGE:
        raise invalid(f"per_page must be between 1 and {MAX_PER_PAGE}", "per_page")
    per_page = int(raw_per_page)
    status = ctx.q("status")
    if status not in (None, "success", "failure"):
        raise invalid("status must be one of: success, failure", "status")
    cursor = ctx.q("cursor")
    before: int | None = None
    if cursor:
        if not cursor.startswith(CURSOR_PREFIX) or not cursor[len(CURSOR_PREFIX):].isdigit():
            raise ApiError(400, "Invalid cursor")
        before = int(cursor[len(CURSOR_PREFIX):])
    oldest = ctx.state.now() - RETENTION_SECONDS
    rows = [d for d in reversed(ctx.state.hook.deliveries)
            if d.delivered_at >= oldest and (before is None or d.id < before)
            and (status is None or (200 <= d.status_code < 400) == (status == "success"))]  # fmt: skip
    page, more = rows[:per_page], len(rows) > per_page
    response = ok([_item(d) for d in page])
    if more:
        query = f"per_page={per_page}" + (f"&status={status}" if status else "")
        link = f"{ctx.render.api}/app/hook/deliveries?{query}&cursor={CURSOR_PREFIX}{page[-1].id}"
        response.headers["link"] = f'<{link}>; rel="next"'
    return response


def get_hook_delivery(ctx: Ctx) -> Response:
    """GET /app/hook/deliveries/{delivery_id}: one delivery with its request and response."""
    d = ctx.state.hook.find(_int_param(ctx, "delivery_id"))
    if d is None:
        raise ApiError(404, "Not Found")
    item = _item(d)
    item["url"] = ctx.state.hook.url
    item["request"] = {"headers": {"X-GitHub-Event": d.event, "X-GitHub-Delivery": d.guid},
                       "payload": json.loads(d.body)}
    item["response"] = {"headers": {}, "payload": d.response_body or None}
    return ok(item)


def redeliver_hook_delivery(ctx: Ctx) -> Response:
    """POST /app/hook/deliveries/{delivery_id}/attempts: re-send the stored body (same GUID), signed, later."""
    state = ctx.state
    d = state.hook.find(_int_param(ctx, "delivery_id"))
    if d is None:
        raise ApiError(404, "Not Found")
    if d.delivered_at < state.now() - RETENTION_SECONDS:
        raise invalid("Deliveries older than 3 days cannot be redelivered", "delivery_id", "Hook")
    if state.hook.url is None or state.hook.secret is None:
        raise invalid("The webhook has no URL", "url", "Hook")
    # GitHub answers 202 at once and delivers afterwards; the thread keeps the sandbox's loop free meanwhile.
    threading.Thread(target=deliver, args=(state, d.event, d.body), kwargs={"guid": d.guid, "redelivery": True},
                     name=f"sandbox-redeliver-{d.id}", daemon=True).start()
    return ok({}, status=202)


def list_calls(ctx: Ctx) -> Response:
    """GET /_sandbox/calls: every request the sandbox answered, oldest first (``?method=`` and ``?path=`` filter)."""
    calls = ctx.state.calls(ctx.q("method"), ctx.q("path"))
    return ok([{"method": c.method, "path": c.path, "query": c.query, "status": c.status, "at": iso(c.at),
                "duration": round(c.duration, 4), "fault": c.fault, "installation_id": c.installation_id}
               for c in calls])


# (method, path, handler, auth, with_repo), as in github_app.sandbox.app.ROUTES
HOOK_ROUTES: list[tuple[str, str, Handler, str, bool]] = [
    ("GET", "/app/hook/config", get_hook_config, "app", False),
    ("GET", "/app/hook/deliveries", list_hook_deliveries, "app", False),
    ("GET", "/app/hook/deliveries/{delivery_id}", get_hook_delivery, "app", False),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts", redeliver_hook_delivery, "app", False),
    ("GET", "/_sandbox/calls", list_calls, "none", False),
]
