"""The webhook intake: verify, store, acknowledge. Nothing else happens on the request path."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from typing import Any

import msgspec
import orjson
from starlette.types import Receive, Scope, Send

from github_app.inbox import InboxWriter, IncomingDelivery
from github_app.settings import Secret

log = logging.getLogger(__name__)


def signature_for(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: Secret, body: bytes, header: str | None) -> bool:
    """Check the HMAC-SHA256 signature over the raw body in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = signature_for(secret.reveal(), body)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


class _Head(msgspec.Struct):
    """The two fields the intake needs from a payload. Decoding into it checks the whole body is
    well-formed JSON but builds Python objects only for these fields, several times faster than a
    full parse of a large payload; the worker parses the whole payload later."""

    action: object = None
    installation: object = None


_HEAD_DECODER = msgspec.json.Decoder(_Head)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_WANTED = frozenset({"content-length", "x-hub-signature-256", "x-github-event", "x-github-delivery"})


def _headers(scope: Scope) -> dict[str, str]:
    """The few request headers the intake reads (ASGI gives names lower-cased)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name in _WANTED:
            found[name] = raw_value.decode("latin-1")
    return found


async def _respond(send: Send, status: int, content: dict[str, Any]) -> None:
    body = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _ClientGone(Exception):
    """The sender disconnected before its body arrived: there is nobody to answer."""


class WebhookEndpoint:
    """``POST /webhooks/github`` as a plain ASGI app: this is the hot path, so no framework request object."""

    def __init__(self, secret: Secret | None, writer: InboxWriter, allowed_events: frozenset[str], max_body: int):
        self.secret = secret
        self.writer = writer
        self.allowed_events = allowed_events
        self.max_body = max_body
        self.rejected: Counter[str] = Counter()  # reason -> count, shown on /metrics

    def _reject(self, status: int, reason: str, message: str, scope: Scope, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.rejected[reason] += 1
        client = scope.get("client")
        log.warning(
            "webhook.rejected",
            extra={
                "reason": reason,
                "delivery_id": headers.get("x-github-delivery"),
                "event_name": headers.get("x-github-event"),
                "client": client[0] if client else None,
            },
        )
        return status, {"error": message}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, content = await self._handle(scope, receive)
        except _ClientGone:
            return
        await _respond(send, status, content)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it grows past the cap (the rest is never buffered)."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = _headers(scope)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:
                return self._reject(400, "bad_length", "Content-Length is not a number.", scope, headers)
            if too_big:
                return self._reject(413, "too_large", f"Payload larger than {self.max_body} bytes.", scope, headers)
        body = await self._read_body(receive)
        if body is None:
            return self._reject(413, "too_large", f"Payload larger than {self.max_body} bytes.", scope, headers)

        if self.secret is not None and not verify_signature(self.secret, body, headers.get("x-hub-signature-256")):
            return self._reject(
                401,
                "bad_signature",
                "Webhook signature mismatch: check that GONOGO_WEBHOOK_SECRET equals the webhook secret "
                "in the GitHub App settings.",
                scope,
                headers,
            )
        event = headers.get("x-github-event", "").strip()
        delivery_id = headers.get("x-github-delivery", "").strip()
        if not event:
            return self._reject(400, "no_event", "Missing X-GitHub-Event header.", scope, headers)
        if not delivery_id:
            return self._reject(400, "no_delivery", "Missing X-GitHub-Delivery header.", scope, headers)
        if len(delivery_id) > 100 or len(event) > 64:
            return self._reject(
                400, "bad_header", "X-GitHub-Delivery or X-GitHub-Event is too long.", scope, headers
            )
        try:
            text = body.decode("utf-8")
            head = _HEAD_DECODER.decode(body)
        except UnicodeDecodeError as exc:
            return self._reject(400, "bad_json", f"Body is not valid JSON: not UTF-8 ({exc.reason}).", scope, headers)
        except msgspec.ValidationError:
            return self._reject(400, "bad_json", "Body is JSON but not an object.", scope, headers)
        except msgspec.DecodeError as exc:
            return self._reject(400, "bad_json", f"Body is not valid JSON: {exc}.", scope, headers)

        action = head.action if isinstance(head.action, str) else None
        installation = head.installation
        installation_id = installation.get("id") if isinstance(installation, dict) else None
        if not isinstance(installation_id, int) or isinstance(installation_id, bool):
            installation_id = None
        item = IncomingDelivery(
            delivery_id=delivery_id,
            event=event,
            action=action,
            installation_id=installation_id,
            payload=text,
            ignored=event not in self.allowed_events,
        )
        try:
            is_new = await self.writer.submit(item)
        except Exception:  # noqa: BLE001 - the database is unavailable; GitHub will redeliver
            return 503, {"error": "The inbox database is unavailable; the delivery was not stored. Retry later."}
        if not is_new:
            log.info("webhook.duplicate", extra={"delivery_id": delivery_id, "event_name": event})
            return 200, {"status": "duplicate", "delivery_id": delivery_id}
        if log.isEnabledFor(logging.INFO):
            log.info(
                "webhook.received",
                extra={"delivery_id": delivery_id, "event_name": event, "installation_id": installation_id,
                       "ignored": item.ignored},
            )  # fmt: skip
        return 202, {"status": "ignored" if item.ignored else "accepted", "delivery_id": delivery_id}
