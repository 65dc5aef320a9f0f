"""The webhook intake: verify, store, acknowledge. Nothing else happens on the request path."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from github_app.inbox import IncomingDelivery, InboxWriter
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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class WebhookEndpoint:
    """``POST /webhooks/github``."""

    def __init__(self, secret: Secret | None, writer: InboxWriter, allowed_events: frozenset[str], max_body: int):
        self.secret = secret
        self.writer = writer
        self.allowed_events = allowed_events
        self.max_body = max_body
        self.rejected: Counter[str] = Counter()  # reason -> count, shown on /metrics

    def _reject(self, status: int, reason: str, message: str, request: Request) -> JSONResponse:
        self.rejected[reason] += 1
        log.warning(
            "webhook.rejected",
            extra={
                "reason": reason,
                "delivery_id": request.headers.get("x-github-delivery"),
                "event_name": request.headers.get("x-github-event"),
                "client": request.client.host if request.client else None,
            },
        )
        return _error(status, message)

    async def __call__(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:
                return self._reject(400, "bad_length", "Content-Length is not a number.", request)
            if too_big:
                return self._reject(413, "too_large", f"Payload larger than {self.max_body} bytes.", request)
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return self._reject(413, "too_large", f"Payload larger than {self.max_body} bytes.", request)
            chunks.append(chunk)
        body = b"".join(chunks)

        if self.secret is not None and not verify_signature(
            self.secret, body, request.headers.get("x-hub-signature-256")
        ):
            return self._reject(
                401,
                "bad_signature",
                "Webhook signature mismatch: check that GONOGO_WEBHOOK_SECRET equals the webhook secret "
                "in the GitHub App settings.",
                request,
            )
        event = request.headers.get("x-github-event", "").strip()
        delivery_id = request.headers.get("x-github-delivery", "").strip()
        if not event:
            return self._reject(400, "no_event", "Missing X-GitHub-Event header.", request)
        if not delivery_id:
            return self._reject(400, "no_delivery", "Missing X-GitHub-Delivery header.", request)
        if len(delivery_id) > 100 or len(event) > 64:
            return self._reject(400, "bad_header", "X-GitHub-Delivery or X-GitHub-Event is too long.", request)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._reject(400, "bad_json", f"Body is not valid JSON: {exc}.", request)
        if not isinstance(payload, dict):
            return self._reject(400, "bad_json", "Body is JSON but not an object.", request)

        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        installation = payload.get("installation")
        installation_id = installation.get("id") if isinstance(installation, dict) else None
        if not isinstance(installation_id, int):
            installation_id = None
        item = IncomingDelivery(
            delivery_id=delivery_id,
            event=event,
            action=action,
            installation_id=installation_id,
            payload=body.decode("utf-8"),
            ignored=event not in self.allowed_events,
        )
        try:
            is_new = await self.writer.submit(item)
        except Exception:  # noqa: BLE001 - the database is unavailable; GitHub will redeliver
            return _error(503, "The inbox database is unavailable; the delivery was not stored. Retry later.")
        fields = {"delivery_id": delivery_id, "event_name": event, "installation_id": installation_id}
        if not is_new:
            log.info("webhook.duplicate", extra=fields)
            return JSONResponse({"status": "duplicate", "delivery_id": delivery_id}, status_code=200)
        log.info("webhook.received", extra={**fields, "ignored": item.ignored})
        status = "ignored" if item.ignored else "accepted"
        return JSONResponse({"status": status, "delivery_id": delivery_id}, status_code=202)
