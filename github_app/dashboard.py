"""``GET /dashboard``: one read-only page of what waits on whom, what was decided, and the queues.

Off unless ``GONOGO_DASHBOARD_TOKEN`` is set; then a browser signs in with HTTP Basic (any user
name, the token as password) and a script may send ``Authorization: Bearer <token>``. The web
process faces the internet (GitHub must reach it), so the page is never public. Everything shown
is escaped, and the page loads nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from datetime import UTC, datetime
from html import escape
from typing import Any

from sqlalchemy import Engine, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from github_app import metrics, views
from github_app.db.models import Outcome
from github_app.settings import Secret

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:20px}h2{font-size:16px;margin-top:1.6em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa}td.num{text-align:right}.muted{color:#656d76}
.go{color:#1a7f37}.no-go{color:#cf222e}.escalate{color:#9a6700}
"""


def token_matches(header: str, token: Secret) -> bool:
    """Whether an Authorization header (Bearer, or Basic with the token as password) carries the token."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip()
    elif scheme == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.reveal().encode())


def _cell(value: object, cls: str = "") -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _table(headings: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _deployment_row(d: dict[str, Any], now: datetime, waiting: bool) -> str:
    name = f"{d['repository']}#{d['run_id']} → {d['environment']}"
    risk = f"{d['risk'] * 100:.0f}%" if d["risk"] is not None else None
    score = f"{d['readiness_score']:.0f}" if d["readiness_score"] is not None else None
    cells = [_cell(name), _cell(d["sha"][:7]), _cell(d["verdict"], d["verdict"] or ""), _cell(risk, "num"),
             _cell(score, "num"), _cell(d["strategy"])]  # fmt: skip
    if waiting:
        cells += [_cell(", ".join(d["reviewers"]) or "anyone allowed by the policy"),
                  _cell(views.age(d["created_at"], now), "num")]  # fmt: skip
    else:
        cells += [_cell(d["answer"] or d["state"]), _cell(views.age(d["created_at"], now), "num")]
    return f"<tr>{''.join(cells)}</tr>"


def _recent_incidents(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Outcome.repository, Outcome.environment, Outcome.sha, Outcome.outcome, Outcome.source,
                   Outcome.observed_at, Outcome.detail)
            .where(Outcome.outcome != "success").order_by(Outcome.observed_at.desc()).limit(limit)
        ).all()  # fmt: skip
    return [r._asdict() for r in rows]


def gather(engine: Engine, snapshot_args: tuple[Any, ...]) -> dict[str, Any]:
    """Everything the page shows, read in one go (off the event loop)."""
    return {
        "waiting": [d for d in views.list_deployments(engine, state="escalated", limit=200) if d["answer"] is None],
        "recent": views.list_deployments(engine, limit=50),
        "incidents": _recent_incidents(engine),
        "failed": views.list_deployments(engine, state="failed", limit=50),
        "queues": metrics.take(engine, *snapshot_args),
    }


def render(data: dict[str, Any], now: datetime) -> str:
    waiting = [_deployment_row(d, now, waiting=True) for d in data["waiting"]]
    recent = [_deployment_row(d, now, waiting=False) for d in data["recent"]]
    incidents = [
        "<tr>" + "".join([
            _cell(f"{o['repository']} → {o['environment']}"), _cell(o["sha"][:7]), _cell(o["outcome"], "no-go"),
            _cell(o["source"]), _cell((o["detail"] or {}).get("alertname") or (o["detail"] or {}).get("description")),
            _cell(views.age(o["observed_at"], now), "num"),
        ]) + "</tr>"
        for o in data["incidents"]
    ]  # fmt: skip
    # a deployment gonogo gave up evaluating waits on GitHub until someone retries its delivery
    incidents = [
        "<tr>" + "".join([
            _cell(f"{d['repository']}#{d['run_id']} → {d['environment']}"), _cell(d["sha"][:7]),
            _cell("gate failed", "no-go"), _cell(f"delivery {d['failure']['delivery']}"),
            _cell(f"{d['failure']['error']} (fix, then `{d['failure']['retry']}`)"),
            _cell(views.age(d["failure"]["failed_at"] or d["created_at"], now), "num"),
        ]) + "</tr>"
        for d in data.get("failed", [])
    ] + incidents  # fmt: skip
    q: metrics.Snapshot = data["queues"]
    queue_rows = [f"<tr>{_cell(state)}{_cell(n, 'num')}</tr>" for state, n in q.deliveries.items()]
    queue_rows.append(f"<tr>{_cell('longest wait of a due delivery')}{_cell(f'{q.oldest_due_seconds:.0f} s', 'num')}</tr>")
    queue_rows += [f"<tr>{_cell('notifications ' + state)}{_cell(n, 'num')}</tr>" for state, n in q.notifications.items()]
    columns = ["deployment", "sha", "verdict", "risk", "readiness", "strategy"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>gonogo</title><style>{STYLE}</style></head><body>
<h1>gonogo</h1><p class="muted">{escape(now.strftime("%Y-%m-%d %H:%M:%S"))} UTC, refreshed every {REFRESH_SECONDS} s</p>
<h2>Waiting for a reviewer ({len(waiting)})</h2>
{_table([*columns, "who may decide", "waiting"], waiting, "No escalation is waiting.")}
<h2>Recent deployments</h2>
{_table([*columns, "answer", "age"], recent, "No deployment yet.")}
<h2>Failures, rollbacks and incidents</h2>
{_table(["release", "sha", "outcome", "source", "what", "age"], incidents, "None recorded.")}
<h2>Queues</h2>
{_table(["inbox", "count"], queue_rows, "")}
</body></html>
"""


async def dashboard(request: Request) -> Response:
    token: Secret | None = request.state.ctx.settings.dashboard_token
    if token is None:
        return JSONResponse({"error": "The dashboard is off: set GONOGO_DASHBOARD_TOKEN to turn it on."}, 404)
    given = request.headers.get("authorization", "")
    if not token_matches(given, token):
        if given:  # a browser's first visit carries no credentials; a wrong password is worth recording
            request.state.endpoint.rejected["dashboard_bad_token"] += 1
            log.warning("dashboard.rejected", extra={"client": request.client.host if request.client else None})
        return Response("Sign in with any user name and GONOGO_DASHBOARD_TOKEN as the password.\n", 401,
                        headers={"WWW-Authenticate": 'Basic realm="gonogo", charset="UTF-8"', **HEADERS},
                        media_type="text/plain")  # fmt: skip
    endpoint = request.state.endpoint
    snapshot_args = (endpoint.rejected, request.state.pool.processed, endpoint.previous_secret_used)
    data = await asyncio.to_thread(gather, request.state.engine, snapshot_args)
    return HTMLResponse(render(data, datetime.now(UTC)), headers=HEADERS)
