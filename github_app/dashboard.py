"""``GET /dashboard``: read-only pages of what waits on whom, what was decided, and how good the gate is.

Off unless ``GONOGO_DASHBOARD_TOKEN`` is set; then a browser signs in with HTTP Basic (any user
name, the token as password) and a script may send ``Authorization: Bearer <token>``. The web
process faces the internet (GitHub must reach it), so the pages are never public. Everything shown
is escaped, charts are inline SVG drawn here, and no page runs a script or loads anything from
elsewhere (the CSP says so to the browser).

Pages: ``/dashboard`` (overview), ``/dashboard/insights`` (gate quality, DORA, charts),
``/dashboard/deployments`` (filtered, paginated list) and ``/dashboard/deployments/{id}`` (one
deployment in full). All take the filters ``repository``, ``environment`` and ``window`` (like 30d).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlalchemy import Engine, and_, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from github_app import browse, charts, insights, metrics, views
from github_app.db import read_only
from github_app.db.models import Deployment, Outcome
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
WINDOWS = ("7d", "30d", "90d", "180d", "365d")
PAGE_SIZE = 50

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:1200px}
h1{font-size:20px;margin:0}h2{font-size:16px;margin-top:1.6em}
nav{display:flex;gap:1.2em;align-items:baseline;margin-bottom:.8em}nav a{color:#0969da}
nav a[aria-current=page]{font-weight:600;color:#1f2328;text-decoration:none}
form.filters{display:flex;gap:.8em;flex-wrap:wrap;align-items:end;padding:.6em;background:#f6f8fa;border-radius:6px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#656d76}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa}td.num{text-align:right}.muted{color:#656d76}caption{text-align:left;font-weight:600}
.go{color:#1a7f37}.no-go{color:#cf222e}.escalate{color:#9a6700}a{color:#0969da}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:1.2em}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.3em}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 1em}dl.kv dt{color:#656d76}dl.kv dd{margin:0}
pre{background:#f6f8fa;padding:.8em;overflow:auto;white-space:pre-wrap}
.pager{display:flex;gap:1em;margin-top:.8em}
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


# --- pieces -------------------------------------------------------------------------------------


def _cell(value: object, cls: str = "") -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _link_cell(text: str, href: str) -> str:
    return f'<td><a href="{escape(href)}">{escape(text)}</a></td>'


def _table(headings: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _detail_href(row_id: int) -> str:
    return f"/dashboard/deployments/{row_id}"


def _deployment_row(d: dict[str, Any], now: datetime, waiting: bool) -> str:
    name = f"{d['repository']}#{d['run_id']} → {d['environment']}"
    risk = f"{d['risk'] * 100:.0f}%" if d["risk"] is not None else None
    score = f"{d['readiness_score']:.0f}" if d["readiness_score"] is not None else None
    cells = [_link_cell(name, _detail_href(d["id"])), _cell(d["sha"][:7]), _cell(d["verdict"], d["verdict"] or ""),
             _cell(risk, "num"), _cell(score, "num"), _cell(d["strategy"])]  # fmt: skip
    if waiting:
        cells += [_cell(", ".join(d["reviewers"]) or "anyone allowed by the policy"),
                  _cell(views.age(d["created_at"], now), "num")]  # fmt: skip
    else:
        cells += [_cell(d["answer"] or d["state"]), _cell(views.age(d["created_at"], now), "num")]
    return f"<tr>{''.join(cells)}</tr>"


COLUMNS = ["deployment", "sha", "verdict", "risk", "readiness", "strategy"]


class Query:
    """The filters of a page, read from its query string."""

    def __init__(self, request: Request, now: datetime) -> None:
        q = request.query_params
        self.repository = q.get("repository") or None
        self.environment = q.get("environment") or None
        self.window = q.get("window") or "30d"
        self.cursor = q.get("cursor") or None
        self.range = insights.window_from(self.window, None, now, repository=self.repository,
                                          environment=self.environment)  # fmt: skip

    def params(self, **extra: str | None) -> str:
        values = {"repository": self.repository, "environment": self.environment, "window": self.window, **extra}
        return urlencode({k: v for k, v in values.items() if v})


def _select(name: str, label: str, options: Sequence[str], chosen: str | None, any_label: str) -> str:
    opts = [f'<option value=""{" selected" if not chosen else ""}>{escape(any_label)}</option>']
    opts += [f'<option value="{escape(o)}"{" selected" if o == chosen else ""}>{escape(o)}</option>' for o in options]
    if chosen and chosen not in options:
        opts.append(f'<option value="{escape(chosen)}" selected>{escape(chosen)}</option>')
    return f'<label for="f-{name}">{escape(label)}<select id="f-{name}" name="{name}">{"".join(opts)}</select></label>'


def _filters(action: str, q: Query, repos: list[str], envs: list[str]) -> str:
    return (f'<form class="filters" method="get" action="{escape(action)}" aria-label="Filters">'
            f"{_select('repository', 'Repository', repos, q.repository, 'all repositories')}"
            f"{_select('environment', 'Environment', envs, q.environment, 'all environments')}"
            f"{_select('window', 'Window', WINDOWS, q.window, 'last 30 days').replace('>last 30 days<', '>default (30d)<')}"
            '<button type="submit">Apply</button></form>')  # fmt: skip


def _layout(title: str, current: str, body: str, now: datetime, refresh: bool = False) -> str:
    links = [("/dashboard", "Overview"), ("/dashboard/insights", "Insights"), ("/dashboard/deployments", "Deployments")]
    nav = "".join(f'<a href="{href}"{" aria-current=page" if href == current else ""}>{label}</a>'
                  for href, label in links)  # fmt: skip
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    stamp = f"{now:%Y-%m-%d %H:%M:%S} UTC" + (f", refreshed every {REFRESH_SECONDS} s" if refresh else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}<meta name="viewport" content="width=device-width">
<title>{escape(title)} · gonogo</title><style>{STYLE}</style></head><body>
<nav aria-label="Pages"><h1>gonogo</h1>{nav}</nav><p class="muted">{escape(stamp)}</p>
<main>{body}</main>
</body></html>
"""


# --- overview -----------------------------------------------------------------------------------


def _recent_incidents(engine: Engine, q: Query, limit: int = 20) -> list[dict[str, Any]]:
    # the deployment an outcome belongs to: the newest of its sha to its environment requested before it
    owner = (
        select(Deployment.id)
        .where(and_(Deployment.repository == Outcome.repository, Deployment.environment == Outcome.environment,
                    Deployment.sha == Outcome.sha, Deployment.created_at <= Outcome.observed_at))
        .order_by(Deployment.created_at.desc()).limit(1).correlate(Outcome).scalar_subquery()
    )  # fmt: skip
    stmt = (
        select(Outcome.repository, Outcome.environment, Outcome.sha, Outcome.outcome, Outcome.source,
               Outcome.observed_at, Outcome.detail, owner.label("deployment_id"))
        .where(Outcome.outcome != "success", Outcome.observed_at >= q.range.since)
        .order_by(Outcome.observed_at.desc()).limit(limit)
    )  # fmt: skip
    if q.repository:
        stmt = stmt.where(Outcome.repository == q.repository)
    if q.environment:
        stmt = stmt.where(Outcome.environment == q.environment)
    with read_only(engine) as conn:
        return [r._asdict() for r in conn.execute(stmt).all()]


def gather(engine: Engine, snapshot_args: tuple[Any, ...], q: Query,
           choices: Callable[[], tuple[list[str], list[str]]]) -> dict[str, Any]:  # fmt: skip
    """Everything the overview shows, read in one go (off the event loop)."""
    filters = browse.Filters(repository=q.repository, environment=q.environment)
    waiting, _ = browse.page(engine, browse.Filters(repository=q.repository, environment=q.environment, waiting=True),
                             limit=browse.MAX_LIMIT)  # fmt: skip
    recent, more = browse.page(engine, filters, limit=20)
    return {
        "waiting": waiting, "recent": recent, "more": more, "incidents": _recent_incidents(engine, q),
        "failed": views.list_deployments(engine, state="failed", repository=q.repository, environment=q.environment,
                                         limit=50),
        "queues": metrics.take(engine, *snapshot_args), "choices": choices(),
    }  # fmt: skip


def _incident_row(o: dict[str, Any], now: datetime) -> str:
    release = f"{o['repository']} → {o['environment']}"
    first = _link_cell(release, _detail_href(o["deployment_id"])) if o["deployment_id"] else _cell(release)
    detail = o["detail"] or {}
    return "<tr>" + "".join([
        first, _cell(o["sha"][:7]), _cell(o["outcome"], "no-go"), _cell(o["source"]),
        _cell(detail.get("alertname") or detail.get("description")), _cell(views.age(o["observed_at"], now), "num"),
    ]) + "</tr>"  # fmt: skip


def _failed_row(d: dict[str, Any], now: datetime) -> str:
    failure = d["failure"]
    return "<tr>" + "".join([
        _cell(f"{d['repository']}#{d['run_id']} → {d['environment']}"), _cell(d["sha"][:7]),
        _cell("gate failed", "no-go"), _cell(f"delivery {failure['delivery']}"),
        _cell(f"{failure['error']} (fix, then `{failure['retry']}`)"),
        _cell(views.age(failure["failed_at"] or d["created_at"], now), "num"),
    ]) + "</tr>"  # fmt: skip


def render(data: dict[str, Any], now: datetime, q: Query) -> str:
    waiting = [_deployment_row(d, now, waiting=True) for d in data["waiting"]]
    recent = [_deployment_row(d, now, waiting=False) for d in data["recent"]]
    # a deployment gonogo gave up evaluating waits on GitHub until someone retries its delivery
    incidents = [_failed_row(d, now) for d in data.get("failed", [])]
    incidents += [_incident_row(o, now) for o in data["incidents"]]
    s: metrics.Snapshot = data["queues"]
    queue_rows = [f"<tr>{_cell(state)}{_cell(n, 'num')}</tr>" for state, n in s.deliveries.items()]
    queue_rows.append(f"<tr>{_cell('longest wait of a due delivery')}{_cell(f'{s.oldest_due_seconds:.0f} s', 'num')}</tr>")
    queue_rows += [f"<tr>{_cell('notifications ' + state)}{_cell(n, 'num')}</tr>" for state, n in s.notifications.items()]
    more = (f'<p><a href="/dashboard/deployments?{escape(q.params())}">All deployments →</a></p>'
            if data["more"] else "")  # fmt: skip
    body = f"""{_filters("/dashboard", q, *data["choices"])}
<h2>Waiting for a reviewer ({len(waiting)})</h2>
{_table([*COLUMNS, "who may decide", "waiting"], waiting, "No escalation is waiting.")}
<h2>Recent deployments</h2>
{_table([*COLUMNS, "answer", "age"], recent, "No deployment yet.")}{more}
<h2>Failures, rollbacks and incidents</h2>
{_table(["release", "sha", "outcome", "source", "what", "age"], incidents, "None recorded.")}
<h2>Queues</h2>
{_table(["inbox", "count"], queue_rows, "")}"""
    return _layout("Overview", "/dashboard", body, now, refresh=True)


# --- deployments list and one deployment --------------------------------------------------------


def render_list(rows: list[dict[str, Any]], cursor: str | None, q: Query, choices: tuple[list[str], list[str]],
                now: datetime) -> str:  # fmt: skip
    body_rows = [_deployment_row(d, now, waiting=False) for d in rows]
    pager = []
    if q.cursor:
        pager.append(f'<a href="/dashboard/deployments?{escape(q.params())}">← Newest</a>')
    if cursor:
        pager.append(f'<a href="/dashboard/deployments?{escape(q.params(cursor=cursor))}" rel="next">Older →</a>')
    scope = f"requested in the last {q.window}" if q.window else ""
    body = f"""{_filters("/dashboard/deployments", q, *choices)}
<h2>Deployments {escape(scope)}</h2>
{_table([*COLUMNS, "answer", "age"], body_rows, "No deployment matches these filters.")}
<nav class="pager" aria-label="Pages of deployments">{"".join(pager)}</nav>"""
    return _layout("Deployments", "/dashboard/deployments", body, now)


def _kv(pairs: Sequence[tuple[str, object]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape('' if v is None else str(v))}</dd>"
                                       for k, v in pairs) + "</dl>"  # fmt: skip


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def render_detail(d: dict[str, Any], now: datetime) -> str:
    """One deployment: what `gonogo deployments show` prints, plus its audit entries."""
    from rules.report import render_text
    from rules.types import Decision

    title = f"{d['repository']} run {d['run_id']} to {d['environment']}"
    facts = _kv([
        ("repository", d["repository"]), ("environment", d["environment"]), ("run", d["run_id"]),
        ("sha", d["sha"]), ("ref", d["ref"]), ("requested by", d["creator"] or "unknown"),
        ("requested", f"{_when(d['created_at'])} ({views.age(d['created_at'], now)} ago)"),
        ("state", d["state"]), ("answer", d["answer"] or "none yet"), ("answered", _when(d["answered_at"])),
        ("answer comment", d["answer_comment"]), ("key", d["key"]),
    ])  # fmt: skip
    decision_html = '<p class="muted">No decision recorded yet.</p>'
    findings_rows: list[str] = []
    drivers_rows: list[str] = []
    if d["decision"]:
        try:
            decision = Decision.model_validate(d["decision"])
        except ValidationError:
            decision_html = '<p class="muted">The recorded decision could not be read by this version of gonogo.</p>'
        else:
            decision_html = f'<pre aria-label="Decision">{escape(render_text(decision))}</pre>'
            findings_rows = ["<tr>" + "".join([_cell(f.rule_id), _cell(f.status, "no-go" if f.status == "failed" else ""),
                                               _cell(f.severity), _cell(f.title), _cell(f.message), _cell(f.remediation)])
                             + "</tr>" for f in decision.findings if f.status != "passed"]  # fmt: skip
            drivers_rows = [f"<tr>{_cell(dr.feature)}{_cell(f'{dr.contribution:+.2f}', 'num')}{_cell(dr.text)}</tr>"
                            for dr in decision.risk.drivers]  # fmt: skip
    reviews = [
        "<tr>" + "".join([_cell(_when(r["created_at"])), _cell(r["actor"]), _cell(r["action"]),
                          _cell("allowed" if r["allowed"] else f"refused: {r['refusal']}"), _cell(r["reason"])]) + "</tr>"
        for r in d["reviews"]
    ]  # fmt: skip
    outcomes = [
        "<tr>" + "".join([_cell(_when(o["observed_at"])), _cell(o["outcome"], "go" if o["outcome"] == "success" else "no-go"),
                          _cell(o["source"]), _cell((o["detail"] or {}).get("alertname")
                                                    or (o["detail"] or {}).get("description"))]) + "</tr>"
        for o in d["outcomes"]
    ]  # fmt: skip
    audit = [f"<tr>{_cell(a['seq'], 'num')}{_cell(_when(a['created_at']))}{_cell(a['kind'])}{_cell(a['actor'])}"
             f"{_cell(', '.join(f'{k}={v}' for k, v in (a['data'] or {}).items()))}</tr>" for a in d["audit"]]  # fmt: skip
    back = f'/dashboard/deployments?{urlencode({"repository": d["repository"], "environment": d["environment"]})}'
    body = f"""<h2>{escape(title)}</h2>
<p><a href="{escape(back)}">← Deployments of {escape(d["repository"])} to {escape(d["environment"])}</a></p>
{facts}
<h2>Decision</h2>
{decision_html}
<h2>Findings</h2>
{_table(["rule", "status", "severity", "title", "message", "how to fix"], findings_rows, "No failed, unknown or waived rule.")}
<h2>Risk drivers</h2>
{_table(["feature", "contribution (log-odds)", "why"], drivers_rows, "No risk driver recorded.")}
<h2>Reviews</h2>
{_table(["when", "who", "action", "allowed", "reason"], reviews, "No reviewer acted on this deployment.")}
<h2>Outcomes</h2>
{_table(["when", "outcome", "source", "what"], outcomes, "No outcome reported yet.")}
<h2>Audit entries</h2>
{_table(["seq", "when", "kind", "actor", "data"], audit, "No audit entry.")}"""
    return _layout(title, "", body, now)


# --- insights -----------------------------------------------------------------------------------


def _dur(seconds: float | None) -> str:
    from github_app.commands.report import duration

    return duration(seconds)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def render_insights(r: insights.Report, q: Query, choices: tuple[list[str], list[str]], now: datetime) -> str:
    from github_app.commands.report import rows as figure_rows

    data = r.to_json()
    weeks = [w["week"][5:] for w in data["weeks"]]
    verdicts = [charts.Series(v, [w["verdicts"][v] for w in data["weeks"]], charts.VERDICT_COLOURS[v])
                for v in insights.VERDICTS]  # fmt: skip
    totals = [sum(w["verdicts"].values()) for w in data["weeks"]]
    deployments_chart = charts.stacked_bars(
        "c-weekly", "Deployments per week by verdict",
        f"Requests per week (Monday to Sunday, UTC) stacked by the gate's verdict; {sum(totals)} in all, "
        f"at most {max(totals, default=0)} in one week.", weeks, verdicts,
    )  # fmt: skip
    cfr = [w["change_failure_rate"] for w in data["weeks"]]
    cfr_chart = charts.lines("c-cfr", "Change failure rate per week",
                             "Share of each week's deployments that went out and then failed.", weeks,
                             [charts.Series("change failure rate", cfr, charts.VERMILLION)], lambda v: f"{v * 100:.0f}%",
                             y_max=1.0)  # fmt: skip
    lead = [None if w["lead_time_seconds_median"] is None else w["lead_time_seconds_median"] / 3600
            for w in data["weeks"]]  # fmt: skip
    lead_chart = charts.lines("c-lead", "Median lead time for changes per week",
                              "Median hours from the first commit of a change to its successful deployment.", weeks,
                              [charts.Series("median lead time (hours)", lead, charts.BLUE)], lambda v: f"{v:.0f} h")  # fmt: skip
    bins = [b for b in r.gate.calibration if b.deployments and b.predicted is not None and b.observed is not None]
    cal_chart = charts.calibration("c-cal", "Risk model calibration",
                                   "Observed failure rate against predicted risk per bin of predicted risk; "
                                   "points on the dashed diagonal are well calibrated.",
                                   [(b.predicted or 0, b.observed or 0, b.deployments) for b in bins])  # fmt: skip
    buckets = list(data["answer_time_buckets"])
    answers_chart = charts.grouped_bars(
        "c-answers", "Time from request to answer",
        "How many answers took each time, automatic answers and human answers apart.", buckets,
        [charts.Series("automatic", data["answer_times"]["automatic"], charts.SKY),
         charts.Series("human", data["answer_times"]["human"], charts.PURPLE)],
    )  # fmt: skip
    figures = [
        ("c-weekly", deployments_chart, charts.data_table("Deployments per week", ["week", *insights.VERDICTS],
                                                          [[w["week"], *w["verdicts"].values()] for w in data["weeks"]])),
        ("c-cfr", cfr_chart, charts.data_table("Change failure rate per week", ["week", "change failure rate"],
                                               [[w["week"], _pct(w["change_failure_rate"])] for w in data["weeks"]])),
        ("c-lead", lead_chart, charts.data_table("Median lead time per week", ["week", "median lead time"],
                                                 [[w["week"], _dur(w["lead_time_seconds_median"])] for w in data["weeks"]])),
        ("c-cal", cal_chart, charts.data_table("Calibration", ["predicted risk bin", "deployments", "mean predicted",
                                                               "observed failure rate"],
                                               [[f"{b.low * 100:.0f}–{b.high * 100:.0f}%", b.deployments,
                                                 _pct(b.predicted), _pct(b.observed)] for b in r.gate.calibration])),
        ("c-answers", answers_chart, charts.data_table("Time to answer", ["time", "automatic", "human"],
                                                       [[b, a, h] for b, a, h in zip(buckets, data["answer_times"]["automatic"],
                                                                                     data["answer_times"]["human"], strict=True)])),
    ]  # fmt: skip
    captions = {"c-weekly": "Deployments per week by verdict", "c-cfr": "Change failure rate per week",
                "c-lead": "Median lead time for changes per week", "c-cal": "Risk model calibration",
                "c-answers": "Time from request to answer"}  # fmt: skip
    grid = "".join(f"<figure><figcaption>{escape(captions[cid])}</figcaption>{svg}{table}</figure>"
                   for cid, svg, table in figures)  # fmt: skip
    groups = [("Overall", data["gate_quality"], data["dora"])]
    groups += [(f"{g['repository']} → {g['environment']}", g["gate_quality"], g["dora"]) for g in data["groups"]]
    labels = [label for label, _ in figure_rows(groups[0][1], groups[0][2])]
    values = [dict(figure_rows(g, d)) for _, g, d in groups]
    head = "<th>figure</th>" + "".join(
        f'<th><a href="/dashboard/deployments?{escape(q.params(repository=g["repository"], environment=g["environment"]))}">'
        f"{escape(t)}</a></th>" if g["repository"] else f"<th>{escape(t)}</th>" for t, g, _ in groups
    )  # fmt: skip
    rows_html = "".join(f"<tr><th scope=row>{escape(label)}</th>" + "".join(_cell(v[label]) for v in values) + "</tr>"
                        for label in labels)  # fmt: skip
    w = r.window
    body = f"""{_filters("/dashboard/insights", q, *choices)}
<h2>Gate quality and DORA, {escape(f"{w.since:%Y-%m-%d} to {w.until:%Y-%m-%d}")}</h2>
<p class="muted">Figures as of {escape(f"{r.generated_at:%Y-%m-%d %H:%M:%S} UTC")}. Definitions: docs/insights.md. Figures per repository and environment link to their deployments.</p>
<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>
<h2>Charts</h2>
<div class="grid">{grid}</div>"""
    return _layout("Insights", "/dashboard/insights", body, now)


# --- endpoints ----------------------------------------------------------------------------------


def _refuse(request: Request) -> Response | None:
    """The response for a request that may not see the pages, or None when it may."""
    token: Secret | None = request.state.ctx.settings.dashboard_token
    if token is None:
        return JSONResponse({"error": "The dashboard is off: set GONOGO_DASHBOARD_TOKEN to turn it on."}, 404)
    given = request.headers.get("authorization", "")
    if token_matches(given, token):
        return None
    if given:  # a browser's first visit carries no credentials; a wrong password is worth recording
        request.state.endpoint.rejected["dashboard_bad_token"] += 1
        log.warning("dashboard.rejected", extra={"client": request.client.host if request.client else None})
    return Response("Sign in with any user name and GONOGO_DASHBOARD_TOKEN as the password.\n", 401,
                    headers={"WWW-Authenticate": 'Basic realm="gonogo", charset="UTF-8"', **HEADERS},
                    media_type="text/plain")  # fmt: skip


Page = Callable[[Request, Query, datetime], Awaitable[str | None]]


def _page(render_page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        refused = _refuse(request)
        if refused is not None:
            return refused
        now = datetime.now(UTC)
        try:
            q = Query(request, now)
            html = await render_page(request, q, now)
        except (insights.WindowError, browse.CursorError, browse.FilterError) as exc:
            return Response(f"{exc}\n", 400, headers=HEADERS, media_type="text/plain")
        if html is None:
            return Response("No such deployment.\n", 404, headers=HEADERS, media_type="text/plain")
        return HTMLResponse(html, headers=HEADERS)

    return endpoint


async def _overview(request: Request, q: Query, now: datetime) -> str:
    endpoint = request.state.endpoint
    snapshot_args = (endpoint.rejected, request.state.pool.processed, endpoint.previous_secret_used)
    data = await asyncio.to_thread(gather, request.state.engine, snapshot_args, q, request.state.insights.choices)
    return render(data, now, q)


async def _deployments(request: Request, q: Query, now: datetime) -> str:
    filters = browse.Filters(repository=q.repository, environment=q.environment, since=q.range.since)

    def read() -> tuple[list[dict[str, Any]], str | None, tuple[list[str], list[str]]]:
        rows, cursor = browse.page(request.state.engine, filters, limit=PAGE_SIZE, cursor=q.cursor)
        return rows, cursor, request.state.insights.choices()

    rows, cursor, choices = await asyncio.to_thread(read)
    return render_list(rows, cursor, q, choices, now)


async def _one(request: Request, q: Query, now: datetime) -> str | None:
    found = await asyncio.to_thread(browse.detail, request.state.engine, int(request.path_params["id"]))
    return None if found is None else render_detail(found, now)


async def _insights(request: Request, q: Query, now: datetime) -> str:
    def read() -> tuple[insights.Report, tuple[list[str], list[str]]]:
        return request.state.insights.get(q.range), request.state.insights.choices()

    report, choices = await asyncio.to_thread(read)
    return render_insights(report, q, choices, now)


dashboard = _page(_overview)


def routes() -> list[Route]:
    return [
        Route("/dashboard", dashboard),
        Route("/dashboard/insights", _page(_insights)),
        Route("/dashboard/deployments", _page(_deployments)),
        Route("/dashboard/deployments/{id:int}", _page(_one)),
    ]
