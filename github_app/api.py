"""``GET /api/v1/...``: deployments, escalations, gate quality and DORA figures as JSON, for scripts.

The same token as the dashboard (``Authorization: Bearer <token>``), off when no token is set. Times
are ISO-8601 in UTC, durations are seconds, field names are stable and described by the OpenAPI
document at ``/api/v1/openapi.json``. The API is for scripts and servers, not other web pages: it
sends no CORS headers and refuses any request a browser marks as coming from another site.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import types
import typing
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from github_app import browse, insights
from github_app.dashboard import token_matches
from github_app.settings import Secret

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class ApiResponse(Response):
    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(content, status_code, {**HEADERS, **(headers or {})})

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse({"error": message}, status, headers)


def cross_origin(request: Request) -> bool:
    """Whether a browser sent this request on behalf of a page from another origin."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    # compare hosts only: behind a TLS-terminating proxy the scheme seen here is not the browser's
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


Handler = Callable[[Request], Awaitable[ApiResponse]]


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Check the API is on, the request same-origin and the token right before ``handler`` runs."""

    async def endpoint(request: Request) -> Response:
        token: Secret | None = request.state.ctx.settings.dashboard_token
        if token is None:
            return _error(404, "The API is off: set GONOGO_DASHBOARD_TOKEN to turn it on.")
        if cross_origin(request):
            log.warning("api.cross_origin_refused", extra={"origin": request.headers.get("origin")})
            return _error(403, "Cross-origin requests are refused: call the API from a script or server, "
                               "not from another site's page.")  # fmt: skip
        given = request.headers.get("authorization", "")
        if not token_matches(given, token):
            if given:
                request.state.endpoint.rejected["api_bad_token"] += 1
                log.warning("api.rejected", extra={"client": request.client.host if request.client else None})
            return _error(401, "Send Authorization: Bearer <GONOGO_DASHBOARD_TOKEN>.",
                          {"WWW-Authenticate": 'Bearer realm="gonogo"'})  # fmt: skip
        try:
            return await handler(request)
        except (insights.WindowError, browse.CursorError, ValueError) as exc:
            return _error(400, str(exc))

    return endpoint


def _window(request: Request) -> insights.Window:
    q = request.query_params
    return insights.window_from(q.get("since"), q.get("until"), datetime.now(UTC), repository=q.get("repository"),
                                environment=q.get("environment"))  # fmt: skip


def _limit(request: Request, default: int = 50) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= browse.MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {browse.MAX_LIMIT}")
    return int(raw)


def _links(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "url": f"{PREFIX}/deployments/{item['id']}", "html_url": f"/dashboard/deployments/{item['id']}"}


async def list_deployments(request: Request) -> ApiResponse:
    q = request.query_params
    since = insights.parse_moment(q["since"], datetime.now(UTC)) if q.get("since") else None
    until = insights.parse_moment(q["until"], datetime.now(UTC)) if q.get("until") else None
    filters = browse.Filters(repository=q.get("repository") or None, environment=q.get("environment") or None,
                             since=since, until=until, state=q.get("state") or None)  # fmt: skip
    rows, cursor = await asyncio.to_thread(browse.page, request.state.engine, filters, limit=_limit(request),
                                           cursor=q.get("cursor") or None)  # fmt: skip
    return ApiResponse({"items": [_links(r) for r in rows], "next_cursor": cursor})


async def one_deployment(request: Request) -> ApiResponse:
    found = await asyncio.to_thread(browse.detail, request.state.engine, int(request.path_params["id"]))
    if found is None:
        return _error(404, "No such deployment: list them with GET /api/v1/deployments.")
    return ApiResponse(_links(found))


async def escalations(request: Request) -> ApiResponse:
    q = request.query_params
    filters = browse.Filters(repository=q.get("repository") or None, environment=q.get("environment") or None,
                             waiting=True)  # fmt: skip
    rows, cursor = await asyncio.to_thread(browse.page, request.state.engine, filters, limit=_limit(request),
                                           cursor=q.get("cursor") or None)  # fmt: skip
    now = datetime.now(UTC)
    items = [{**_links(r), "waiting_seconds": max(0.0, (now - r["created_at"]).total_seconds())} for r in rows]
    return ApiResponse({"items": items, "next_cursor": cursor})


async def _report(request: Request) -> dict[str, Any]:
    window = _window(request)
    report: insights.Report = await asyncio.to_thread(request.state.insights.get, window)
    return report.to_json()


async def gate_quality(request: Request) -> ApiResponse:
    r = await _report(request)
    return ApiResponse({"window": r["window"], "generated_at": r["generated_at"], "overall": r["gate_quality"],
                        "groups": [g["gate_quality"] for g in r["groups"]]})  # fmt: skip


async def dora(request: Request) -> ApiResponse:
    r = await _report(request)
    return ApiResponse({"window": r["window"], "generated_at": r["generated_at"], "overall": r["dora"],
                        "groups": [g["dora"] for g in r["groups"]]})  # fmt: skip


async def full_report(request: Request) -> ApiResponse:
    return ApiResponse(await _report(request))


async def openapi_document(request: Request) -> ApiResponse:
    return ApiResponse(openapi())


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/openapi.json", guarded(openapi_document)),
        Route(f"{PREFIX}/deployments", guarded(list_deployments)),
        Route(PREFIX + "/deployments/{id:int}", guarded(one_deployment)),
        Route(f"{PREFIX}/escalations", guarded(escalations)),
        Route(f"{PREFIX}/gate-quality", guarded(gate_quality)),
        Route(f"{PREFIX}/dora", guarded(dora)),
        Route(f"{PREFIX}/insights", guarded(full_report)),
    ]


# --- the OpenAPI description ---------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _schema_of(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _nullable(_schema_of(args[0]))
    if origin is list:
        return {"type": "array", "items": _schema_of(typing.get_args(hint)[0])}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    return {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"},
            bool: {"type": "boolean"}}[hint]  # fmt: skip


def _dataclass_schema(cls: type, description: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    return {"type": "object", "description": description, "additionalProperties": False, "required": fields,
            "properties": {name: _schema_of(hints[name]) for name in fields}}  # fmt: skip


def _obj(properties: dict[str, Any], description: str = "", required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties,
                           "required": list(properties) if required is None else required}  # fmt: skip
    if description:
        out["description"] = description
    return out


STR, NSTR = {"type": "string"}, {"type": ["string", "null"]}
TIME, NTIME = {"type": "string", "format": "date-time"}, {"type": ["string", "null"], "format": "date-time"}
NUM = {"type": ["number", "null"]}


def _deployment_fields() -> dict[str, Any]:
    return {
        "id": {"type": "integer", "description": "gonogo's id of the deployment"},
        "key": {**STR, "description": "repository/run id/environment/run attempt"},
        "repository": STR, "environment": STR, "run_id": {"type": "integer"}, "sha": STR, "ref": NSTR,
        "creator": NSTR, "state": {**STR, "description": "lifecycle state (evaluating, escalated, answered, ...)"},
        "answer": {"type": ["string", "null"], "enum": ["approved", "rejected", None]},
        "created_at": {**TIME, "description": "when GitHub asked gonogo"}, "answered_at": NTIME,
        "verdict": {"type": ["string", "null"], "enum": ["go", "escalate", "no-go", None]},
        "action": {"type": ["string", "null"], "enum": ["approve", "escalate", "reject", None]},
        "readiness_score": NUM, "risk": {**NUM, "description": "predicted probability of failure, 0..1"},
        "confidence": NUM, "strategy": NSTR, "reviewers": {"type": "array", "items": STR},
        "url": STR, "html_url": STR,
    }  # fmt: skip


def _window_schema() -> dict[str, Any]:
    return _obj({"since": TIME, "until": TIME, "repository": NSTR, "environment": NSTR})


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API."""
    item = _obj(_deployment_fields(), "A deployment gonogo was asked about, with its decision's headline figures.")
    escalation = _obj({**_deployment_fields(), "waiting_seconds": {"type": "number"}}, "An escalation still waiting.")
    detail_fields = {k: v for k, v in _deployment_fields().items()
                     if k not in ("verdict", "action", "readiness_score", "risk", "confidence", "strategy", "reviewers")}  # fmt: skip
    detail = _obj({
        **detail_fields, "answer_comment": NSTR,
        "decision": {"type": ["object", "null"], "description": "the full decision as recorded (verdict, findings, "
                     "risk and its drivers, evidence); null before one is made"},
        "reviews": {"type": "array", "items": _obj({"actor": STR, "action": STR, "allowed": {"type": "boolean"},
                                                     "reason": STR, "refusal": NSTR, "created_at": TIME})},
        "outcomes": {"type": "array", "items": _obj({"outcome": {"type": "string", "enum": ["success", "failure",
                                                     "rollback", "incident"]}, "source": STR, "observed_at": TIME,
                                                     "detail": {"type": "object"}})},
        "audit": {"type": "array", "items": _obj({"seq": {"type": "integer"}, "created_at": TIME, "kind": STR,
                                                  "actor": NSTR, "data": {"type": "object"}})},
    }, "One deployment with everything gonogo recorded about it.")  # fmt: skip

    def page(ref: str) -> dict[str, Any]:
        return _obj({"items": {"type": "array", "items": {"$ref": ref}},
                     "next_cursor": {**NSTR, "description": "pass as cursor for the next page; null on the last"}})  # fmt: skip

    def figures(ref: str) -> dict[str, Any]:
        return _obj({"window": {"$ref": "#/components/schemas/Window"}, "generated_at": TIME,
                     "overall": {"$ref": ref}, "groups": {"type": "array", "items": {"$ref": ref}}})  # fmt: skip

    report = _obj({
        "window": {"$ref": "#/components/schemas/Window"}, "generated_at": TIME,
        "gate_quality": {"$ref": "#/components/schemas/GateQuality"}, "dora": {"$ref": "#/components/schemas/Dora"},
        "groups": {"type": "array", "items": _obj({"repository": STR, "environment": STR,
                                                    "gate_quality": {"$ref": "#/components/schemas/GateQuality"},
                                                    "dora": {"$ref": "#/components/schemas/Dora"}})},
        "weeks": {"type": "array", "items": _obj({"week": {"type": "string", "format": "date"},
                                                   "verdicts": _obj({v: {"type": "integer"} for v in insights.VERDICTS}),
                                                   "change_failure_rate": NUM, "lead_time_seconds_median": NUM})},
        "answer_time_buckets": {"type": "array", "items": STR},
        "answer_times": _obj({k: {"type": "array", "items": {"type": "integer"}} for k in ("automatic", "human")}),
    }, "Every figure of the window, overall, per repository and environment, and per week.")  # fmt: skip
    window_params = [
        {"name": "repository", "in": "query", "schema": STR, "description": "owner/name"},
        {"name": "environment", "in": "query", "schema": STR},
        {"name": "since", "in": "query", "schema": STR,
         "description": "ISO-8601 date or time, or an age like 30d (default: 30 days before until)"},
        {"name": "until", "in": "query", "schema": STR, "description": "ISO-8601 date or time, or an age (default: now)"},
    ]  # fmt: skip
    paging = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": browse.MAX_LIMIT}},
        {"name": "cursor", "in": "query", "schema": STR, "description": "next_cursor of the previous page"},
    ]

    def op(summary: str, ref: str, params: list[dict[str, Any]], not_found: bool = False) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}},
            "400": {"$ref": "#/components/responses/BadRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/CrossOrigin"},
        }
        if not_found:
            responses["404"] = {"$ref": "#/components/responses/NotFound"}
        return {"get": {"summary": summary, "parameters": params, "responses": responses}}

    def error_response(text: str) -> dict[str, Any]:
        return {"description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}  # fmt: skip

    s = "#/components/schemas/"
    return {
        "openapi": "3.1.0",
        "info": {"title": "gonogo API", "version": "1",
                 "description": "Deployments, escalations, gate quality and DORA figures. Times are ISO-8601 UTC, "
                                "durations seconds. docs/insights.md defines every figure."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            f"{PREFIX}/deployments": op("List deployments, newest first", s + "DeploymentPage", [
                *window_params, {"name": "state", "in": "query", "schema": STR}, *paging]),
            PREFIX + "/deployments/{id}": op("One deployment in full", s + "DeploymentDetail", [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}], not_found=True),
            f"{PREFIX}/escalations": op("Escalations waiting for a reviewer, newest first", s + "EscalationPage",
                                        [*window_params[:2], *paging]),
            f"{PREFIX}/gate-quality": op("Gate quality over a window", s + "GateQualityFigures", window_params),
            f"{PREFIX}/dora": op("DORA's four keys over a window", s + "DoraFigures", window_params),
            f"{PREFIX}/insights": op("Every figure of a window, with weekly series", s + "Report", window_params),
            f"{PREFIX}/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the dashboard token, GONOGO_DASHBOARD_TOKEN"}},
            "responses": {
                "BadRequest": error_response("A parameter could not be read; the message says which."),
                "Unauthorized": error_response("No or wrong token."),
                "CrossOrigin": error_response("Sent by a browser on behalf of another site's page."),
                "NotFound": error_response("No such deployment."),
            },
            "schemas": {
                "Error": _obj({"error": STR}),
                "Window": _window_schema(),
                "Deployment": item,
                "Escalation": escalation,
                "DeploymentDetail": detail,
                "DeploymentPage": page(s + "Deployment"),
                "EscalationPage": page(s + "Escalation"),
                "CalibrationBin": _dataclass_schema(insights.CalibrationBin, "Predicted against observed failure rate."),
                "GateQuality": _dataclass_schema(insights.GateQuality, "How the gate did; docs/insights.md."),
                "Dora": _dataclass_schema(insights.Dora, "DORA's four keys; docs/insights.md."),
                "GateQualityFigures": figures(s + "GateQuality"),
                "DoraFigures": figures(s + "Dora"),
                "Report": report,
            },
        },
    }
