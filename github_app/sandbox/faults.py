"""The sandbox's outer ASGI layer: logs every call and plays the armed faults."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from github_app.sandbox.state import Call, Fault, SandboxState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[Any]]

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
DOCS = "https://docs.github.com/rest"
SECONDARY_RATE_LIMIT_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you "
                                "try again. If you reach out to GitHub Support for help, please include the "
                                "request ID SANDBOX.")
DROP_SENTINEL = "sandbox-dropped-connection"
# REST API versions GitHub serves; a request naming another one is refused with 400, as GitHub does. A request
# naming none gets GitHub's default, 2022-11-28 (recorded as None in the call log).
API_VERSIONS = ("2022-11-28", "2026-03-10")


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"message": message, "documentation_url": DOCS, "status": str(status)}).encode()


def _fault_response(fault: Fault, now: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Build the response a non-latency fault answers with."""
    headers = [(b"content-type", b"application/json; charset=utf-8")]
    if fault.kind == "secondary_rate_limit":
        headers.append((b"retry-after", str(fault.retry_after).encode()))
        return 403, headers, _error_body(403, SECONDARY_RATE_LIMIT_MESSAGE)
    if fault.kind == "rate_limit_429":
        headers.append((b"retry-after", str(fault.retry_after).encode()))
        return 429, headers, _error_body(429, "Too many requests. " + SECONDARY_RATE_LIMIT_MESSAGE)
    if fault.kind in ("secondary_rate_limit_no_retry_after", "rate_limit_429_no_retry_after"):
        # GitHub may name no time at all: the primary-limit headers still come, with requests to spare
        headers += [(b"x-ratelimit-limit", b"5000"), (b"x-ratelimit-remaining", b"4987"),
                    (b"x-ratelimit-used", b"13"), (b"x-ratelimit-resource", b"core"),
                    (b"x-ratelimit-reset", str(int(now) + 3600).encode())]
        status = 403 if fault.kind == "secondary_rate_limit_no_retry_after" else 429
        return status, headers, _error_body(status, SECONDARY_RATE_LIMIT_MESSAGE)
    if fault.kind == "corrupt":
        # a 200 whose JSON is not what the route describes (a proxy's page, a half-migrated endpoint)
        return 200, headers, json.dumps({"sandbox": "corrupt body", "items": "not what was asked for"}).encode()
    if fault.kind == "primary_rate_limit":
        headers += [(b"x-ratelimit-limit", b"5000"), (b"x-ratelimit-remaining", b"0"),
                    (b"x-ratelimit-used", b"5000"),
                    (b"x-ratelimit-reset", str(int(now) + fault.retry_after).encode())]
        return 403, headers, _error_body(403, "API rate limit exceeded for installation ID SANDBOX. If you "
                                              "reach out to GitHub Support for help, please include the request "
                                              "ID SANDBOX.")
    status = fault.status
    message = {403: "Forbidden", 404: "Not Found", 500: "Server Error", 502: "Server Error", 503: "Service Unavailable",
               504: "We couldn't respond to your request in time."}.get(status, "Server Error")
    return status, headers, _error_body(status, message)


class FaultAndLogLayer:
    """Wrap the sandbox routes: add latency, answer armed faults, record every call."""

    def __init__(self, inner: ASGIApp, state: SandboxState) -> None:
        self.inner = inner
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        state = self.state
        started, at = time.perf_counter(), state.now()
        method, path = scope["method"], scope["path"]
        raw_query = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) if raw_query else {}
        body = await read_body(receive)
        # the routes read the parsed query from here rather than parse it again; handlers never change it
        info: dict[str, Any] = {"installation_id": None, "query": query}
        scope["sandbox"] = info
        api_version = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-github-api-version"), None)
        if api_version is not None and api_version not in API_VERSIONS and not path.startswith("/_sandbox/"):
            payload = _error_body(400, f"Unsupported 'X-GitHub-Api-Version' header value: {api_version}. "
                                       f"Supported versions are {', '.join(API_VERSIONS)}.")
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            state.record(Call(method=method, path=path, query=query, status=400, body=None, at=at,
                              duration=time.perf_counter() - started, fault=None, installation_id=None,
                              api_version=api_version))
            return None
        fired = state.take_faults(method, path, query)
        delay = state.latency + sum(f.seconds for f in fired if f.kind == "latency")
        if delay > 0:
            # uvloop's timers have millisecond granularity and may fire a little early: top up so the
            # added latency is at least what was asked for. Each top-up is rounded up to a whole
            # millisecond: a shorter one rounds to a zero-length timer, and the loop would spin until
            # the deadline passed
            until = started + delay
            while (left := until - time.perf_counter()) > 0:
                await asyncio.sleep(math.ceil(left * 1000) / 1000)
        terminal = next((f for f in fired if f.kind != "latency"), None)
        fault_name = terminal.kind if terminal else ("latency" if delay > 0 and fired else None)
        status_box = [0]

        response_chunks: list[bytes] = []
        response_headers: dict[str, str] = {}

        def log(status: int) -> None:
            keep = state.record_responses
            state.record(Call(method=method, path=path, query=query, status=status,
                              body=_decode(body) if method in WRITE_METHODS else None, at=at,
                              duration=time.perf_counter() - started, fault=fault_name,
                              installation_id=info["installation_id"],
                              response=_decode(b"".join(response_chunks)) if keep else None,
                              response_headers=dict(response_headers) if keep else None,
                              api_version=api_version))

        if terminal is not None and terminal.kind == "drop":
            log(0)
            # uvicorn closes the connection without a response when the app returns a value.
            return DROP_SENTINEL
        if terminal is not None and terminal.kind == "late_504":
            async def discard(message: Message) -> None:
                pass

            await self.inner(scope, _replay(body, receive), discard)  # the request is carried out...
            payload = _error_body(504, "We couldn't respond to your request in time. Sorry about that. Please try "
                                       "resubmitting your request and contact us if the problem persists.")
            await send({"type": "http.response.start", "status": 504,  # ...but the answer never comes back
                        "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            log(504)
            return None
        if terminal is not None and terminal.kind != "truncate":
            status, headers, payload = _fault_response(terminal, state.now())
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            log(status)
            return None

        replay = _replay(body, receive)
        if terminal is not None:  # truncate: buffer the real answer, then send only half of its body
            captured: list[Message] = []

            async def capture(message: Message) -> None:
                captured.append(message)

            await self.inner(scope, replay, capture)
            start = next(m for m in captured if m["type"] == "http.response.start")
            full = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
            cut = full[: len(full) // 2]
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(cut)).encode()))
            await send({"type": "http.response.start", "status": start["status"], "headers": headers})
            await send({"type": "http.response.body", "body": cut})
            log(start["status"])
            return None

        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                if state.record_responses:
                    response_headers.update((k.decode("latin-1"), v.decode("latin-1"))
                                            for k, v in message.get("headers", []))
            elif state.record_responses:
                response_chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.inner(scope, replay, send_and_watch)
        finally:
            log(status_box[0] or 500)
        return None


async def read_body(receive: Receive) -> bytes:
    """Read a request's whole body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
