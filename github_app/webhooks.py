"""The webhook intake: verify, store, acknowledge. Nothing else happens on the request path."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qs

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
_WANTED = frozenset({"content-length", "content-type", "x-hub-signature-256", "x-github-event", "x-github-delivery"})
FORM = "application/x-www-form-urlencoded"


def _headers(scope: Scope, wanted: frozenset[str] = _WANTED) -> dict[str, str]:
    """The few request headers the intake reads (ASGI gives names lower-cased)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name in wanted:
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


class _OverBudget(Exception):
    """The intake holds as many body bytes as it may: this request's body does not fit."""


class BodyBudget:
    """The bytes of request bodies the intake holds at once, across requests and endpoints.

    A body is held before its signature can be checked (the HMAC is over all of it), so without a bound
    anyone who reaches the URL could make the process hold many large bodies at once. A request takes
    from the budget as its body arrives and gives it back when it has been answered.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


_HELD = "gonogo.body_bytes"  # the scope key for what a request took from the budget


class _Refused(Exception):
    """The request is refused with ``status`` and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.content = {"error": message}


async def _read_body(receive: Receive, max_body: int, take: Callable[[int], bool]) -> bytes | None:
    """The whole body, or None as soon as it grows past ``max_body`` (the rest is never buffered).

    Raises _OverBudget when ``take`` refuses a chunk (the intake holds too much already).
    """
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None
        if not take(len(chunk)):
            raise _OverBudget
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _declared_too_big(headers: dict[str, str], max_body: int) -> bool | None:
    """Whether Content-Length already says the body is too big; None when it is not a number."""
    declared = headers.get("content-length")
    if declared is None:
        return False
    try:
        return int(declared) > max_body
    except ValueError:
        return None


class _Endpoint:
    """A plain ASGI endpoint that stores what it accepts in the inbox and answers JSON.

    ``_handle`` returns the status and body, or raises ``_Refused`` through ``_refuse``, which
    counts the refusal by reason (shown on /metrics) and logs it.
    """

    writer: InboxWriter
    max_body: int
    body_timeout: float  # seconds for the whole body: a trickled body must not hold the connection
    budget: BodyBudget
    rejected: Counter[str]
    log_event = "webhook.rejected"
    reason_prefix = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, content = await self._handle(scope, receive)
        except _ClientGone:
            return
        except _Refused as refused:
            status, content = refused.status, refused.content
        finally:
            self.budget.give(scope.pop(_HELD, 0))
        await _respond(send, status, content)

    def _take(self, scope: Scope, n: int) -> bool:
        if not self.budget.take(n):
            return False
        scope[_HELD] = scope.get(_HELD, 0) + n
        return True

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def _refuse(self, status: int, reason: str, message: str, scope: Scope, headers: dict[str, str]) -> NoReturn:
        self.rejected[self.reason_prefix + reason] += 1
        client = scope.get("client")
        log.warning(
            self.log_event,
            extra={
                "reason": reason,
                "delivery_id": headers.get("x-github-delivery"),
                "event_name": headers.get("x-github-event"),
                "client": client[0] if client else None,
            },
        )
        raise _Refused(status, message)

    async def _body(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> bytes:
        """The body, refused with 413 as soon as it (or its Content-Length) is over the limit."""
        too_big = _declared_too_big(headers, self.max_body)
        if too_big is None:
            self._refuse(400, "bad_length", "Content-Length is not a number.", scope, headers)
        try:
            async with asyncio.timeout(self.body_timeout):
                body = None if too_big else await _read_body(receive, self.max_body, lambda n: self._take(scope, n))
        except TimeoutError:
            self._refuse(408, "slow_body", f"The body did not arrive within {self.body_timeout:g} s; send it whole "
                         "(GONOGO_BODY_TIMEOUT_SECONDS sets the limit).", scope, headers)  # fmt: skip
        except _OverBudget:
            self._refuse(503, "busy", f"The intake already holds {self.budget.limit} bytes of request bodies "
                         "(GONOGO_INTAKE_BUFFER_BYTES); retry shortly.", scope, headers)  # fmt: skip
        if body is None:
            self._refuse(413, "too_large", f"Payload larger than {self.max_body} bytes.", scope, headers)
        return body

    async def _submit(self, item: IncomingDelivery, what: str) -> bool:
        """Store ``item``; True if new. A database failure answers 503: the sender will try again."""
        try:
            return await self.writer.submit(item)
        except Exception:  # noqa: BLE001 - the database is unavailable
            raise _Refused(503, f"The inbox database is unavailable; the {what} was not stored. Retry later.") from None


def _action(head: _Head) -> str | None:
    """The payload's action, if it fits its column (a value that did not would fail its whole group commit)."""
    return head.action if isinstance(head.action, str) and len(head.action) <= 64 else None


def _installation_id(head: _Head) -> int | None:
    """The payload's installation id, if it is one (a positive 64-bit integer)."""
    installation = head.installation
    found = installation.get("id") if isinstance(installation, dict) else None
    if not isinstance(found, int) or isinstance(found, bool) or not 0 < found < 2**63:
        return None
    return found


class WebhookEndpoint(_Endpoint):
    """``POST /webhooks/github`` as a plain ASGI app: this is the hot path, so no framework request object."""

    def __init__(
        self, secret: Secret | None, writer: InboxWriter, allowed_events: frozenset[str], max_body: int,
        previous_secret: Secret | None = None, body_timeout: float = 10.0, budget: BodyBudget | None = None,
    ) -> None:  # fmt: skip
        self.secret = secret
        self.budget = budget or BodyBudget(4 * max_body)
        self.body_timeout = body_timeout
        self.previous_secret = previous_secret  # accepted too, while the secret is rotated
        self.previous_secret_used = 0  # deliveries signed with it (on /metrics): drop it once this stays put
        self.writer = writer
        self.allowed_events = allowed_events
        self.max_body = max_body
        self.rejected: Counter[str] = Counter()  # reason -> count, shown on /metrics

    def _signed(self, body: bytes, headers: dict[str, str]) -> bool:
        """Signed with the secret, or with the previous one during a rotation (which is logged)."""
        assert self.secret is not None
        signature = headers.get("x-hub-signature-256")
        if verify_signature(self.secret, body, signature):
            return True
        if self.previous_secret is not None and verify_signature(self.previous_secret, body, signature):
            self.previous_secret_used += 1
            log.info("webhook.previous_secret", extra={"delivery_id": headers.get("x-github-delivery")})
            return True
        return False

    def _names(self, scope: Scope, headers: dict[str, str]) -> tuple[str, str]:
        """The event name and the delivery id from the headers."""
        event = headers.get("x-github-event", "").strip()
        delivery_id = headers.get("x-github-delivery", "").strip()
        if not event:
            self._refuse(400, "no_event", "Missing X-GitHub-Event header.", scope, headers)
        if not delivery_id:
            self._refuse(400, "no_delivery", "Missing X-GitHub-Delivery header.", scope, headers)
        if len(delivery_id) > 100 or len(event) > 64:
            self._refuse(400, "bad_header", "X-GitHub-Delivery or X-GitHub-Event is too long.", scope, headers)
        return event, delivery_id

    def _unform(self, body: bytes, scope: Scope, headers: dict[str, str]) -> bytes:
        """The JSON a form-encoded delivery carries in its ``payload`` field (a webhook set to the form content type)."""
        try:
            fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        payload = fields.get("payload")
        if not payload or len(payload) != 1:
            self._refuse(400, "bad_form", "Form-encoded body without a single 'payload' field: set the GitHub App's "
                         "webhook content type to application/json.", scope, headers)  # fmt: skip
        return payload[0].encode()

    def _decode(self, body: bytes, scope: Scope, headers: dict[str, str]) -> tuple[str, _Head]:
        """The body as text, and the fields the intake reads; refused unless it is a JSON object."""
        form = headers.get("content-type", "").split(";")[0].strip().lower() == FORM
        if form and not body.lstrip().startswith(b"{"):  # a JSON object mislabelled as a form is taken as it is
            body = self._unform(body, scope, headers)  # the signature was checked over the form body, as sent
        try:
            return body.decode("utf-8"), _HEAD_DECODER.decode(body)
        except UnicodeDecodeError as exc:
            self._refuse(400, "bad_json", f"Body is not valid JSON: not UTF-8 ({exc.reason}).", scope, headers)
        except msgspec.ValidationError:
            self._refuse(400, "bad_json", "Body is JSON but not an object.", scope, headers)
        except msgspec.DecodeError as exc:
            self._refuse(400, "bad_json", f"Body is not valid JSON: {exc}.", scope, headers)
        except RecursionError:  # the decoder's own depth limit, inside an object (about 1,000 levels)
            self._refuse(400, "too_deep", "Body is JSON nested too deeply; GitHub's payloads nest far less.", scope,
                         headers)  # fmt: skip

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = _headers(scope)
        body = await self._body(scope, receive, headers)
        if self.secret is not None and not self._signed(body, headers):
            self._refuse(
                401,
                "bad_signature",
                "Webhook signature mismatch: check that GONOGO_WEBHOOK_SECRET equals the webhook secret "
                "in the GitHub App settings.",
                scope,
                headers,
            )
        event, delivery_id = self._names(scope, headers)
        text, head = self._decode(body, scope, headers)
        item = IncomingDelivery(
            delivery_id=delivery_id,
            event=event,
            action=_action(head),
            installation_id=_installation_id(head),
            payload=text,
            ignored=event not in self.allowed_events,
        )
        if not await self._submit(item, "delivery"):
            log.info("webhook.duplicate", extra={"delivery_id": delivery_id, "event_name": event})
            return 200, {"status": "duplicate", "delivery_id": delivery_id}
        if log.isEnabledFor(logging.INFO):
            log.info(
                "webhook.received",
                extra={"delivery_id": delivery_id, "event_name": event, "installation_id": item.installation_id,
                       "ignored": item.ignored},
            )  # fmt: skip
        return 202, {"status": "ignored" if item.ignored else "accepted", "delivery_id": delivery_id}


ALERT_EVENT = "alertmanager"  # the inbox's event name for Alertmanager notifications (never a GitHub event)
_ALERT_HEADERS = frozenset({"content-length", "authorization"})


class AlertmanagerEndpoint(_Endpoint):
    """``POST /webhooks/alertmanager``: Prometheus Alertmanager's webhook, stored in the inbox for a worker.

    Alertmanager authenticates with a bearer token (``http_config.authorization`` in its receiver),
    compared in constant time with ``GONOGO_ALERTMANAGER_TOKEN``. A notification is stored under an
    id made from its body, so an identical re-send is answered 200 and not processed again.
    """

    log_event = "alertmanager.rejected"
    reason_prefix = "alertmanager_"

    def __init__(self, token: Secret | None, writer: InboxWriter, max_body: int, rejected: Counter[str], *,
                 body_timeout: float = 10.0, screen: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
                 budget: BodyBudget | None = None):  # fmt: skip
        self.token = token
        self.budget = budget or BodyBudget(4 * max_body)
        # names the alerts refused whatever the database holds (a malformed sha label), for the answer
        self.screen = screen
        self.body_timeout = body_timeout
        self.writer = writer
        self.max_body = max_body
        self.rejected = rejected  # shared with the GitHub intake: /metrics shows both

    def _authorised(self, header: str | None) -> bool:
        assert self.token is not None
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.reveal().encode()
        )

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = _headers(scope, _ALERT_HEADERS)
        if self.token is None:
            self._refuse(404, "off", "The Alertmanager intake is off: set GONOGO_ALERTMANAGER_TOKEN and send it as a "
                         "bearer token from Alertmanager's webhook receiver.", scope, headers)  # fmt: skip
        if not self._authorised(headers.get("authorization")):
            self._refuse(401, "bad_token", "Missing or wrong bearer token: Alertmanager's receiver must send "
                         "GONOGO_ALERTMANAGER_TOKEN in http_config.authorization.", scope, headers)  # fmt: skip
        body = await self._body(scope, receive, headers)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self._refuse(400, "bad_json", f"Body is not valid JSON: {exc}.", scope, headers)
        except RecursionError:
            self._refuse(400, "too_deep", "Body is JSON nested too deeply.", scope, headers)
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            self._refuse(400, "not_alertmanager", "Body is not an Alertmanager webhook notification "
                         "(an object with an 'alerts' list).", scope, headers)  # fmt: skip
        status = payload.get("status")
        item = IncomingDelivery(
            delivery_id="alertmanager-" + hashlib.sha256(body).hexdigest()[:48],
            event=ALERT_EVENT,
            action=status[:64] if isinstance(status, str) else None,
            installation_id=None,
            payload=body.decode("utf-8"),
            ignored=False,
        )
        is_new = await self._submit(item, "notification")
        refused = self.screen(payload) if self.screen is not None else []
        log.info("alertmanager.received", extra={"delivery_id": item.delivery_id, "alerts": len(payload["alerts"]),
                                                 "duplicate": not is_new, "refused": len(refused)})  # fmt: skip
        if not is_new:
            return 200, {"status": "duplicate", "delivery_id": item.delivery_id, "refused": refused}
        return 202, {"status": "accepted", "delivery_id": item.delivery_id, "refused": refused}
