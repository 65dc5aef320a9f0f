"""Notifications: message builders, the transactional outbox and the dispatcher that delivers it.

The gate only *enqueues* (inside the transaction that records the state change), so a slow or
broken chat service never delays a decision. ``OutboxDispatcher`` runs as its own asyncio task,
claims due messages with a lease, POSTs them, retries failures with backoff and jitter, and marks
each one sent exactly once. A message is keyed: enqueueing the same key again does nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from github_app import audit, db
from github_app.audit import redact_url
from github_app.db.models import Deployment, OutboxMessage
from github_app.jobs import ConsumerLoop, Doorbell, JobTable
from rules.policy import NOTIFY_SECRET_PREFIX
from rules.types import Decision

log = logging.getLogger(__name__)

Channel = Literal["slack", "teams", "webhook"]
NotifyEvent = Literal["escalated", "reminded", "approved", "rejected", "overridden", "expired"]
CHANNELS: tuple[Channel, ...] = ("slack", "teams", "webhook")
EVENTS: tuple[NotifyEvent, ...] = ("escalated", "reminded", "approved", "rejected", "overridden", "expired")
SIGNATURE_HEADER = "X-Gonogo-Signature"  # "t=<unix time>,v1=<hex>": not GitHub's header, nor its format
TIMESTAMP_HEADER = "X-Gonogo-Timestamp"
SIGNATURE_VERSION = "v1"
SIGNATURE_TOLERANCE_SECONDS = 300
DELIVERY_HEADER = "X-Gonogo-Delivery"
EVENT_HEADER = "X-Gonogo-Event"
BODY_SCHEMA = "gonogo.notification/v1"
USER_AGENT = "gonogo-notifier/1"
_RETRYABLE_STATUS = {408, 425, 429}
# private networks notifications may go to, as CIDR ranges (comma-separated); by default only public addresses.
# Not under NOTIFY_SECRET_PREFIX: that namespace is for the secrets a policy may name.
NETWORKS_VARIABLE = "GONOGO_NOTIFICATION_NETWORKS"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def notification_networks(environ: Mapping[str, str]) -> list[IPNetwork]:
    """The private networks the operator lets notifications reach (``GONOGO_NOTIFICATION_NETWORKS``)."""
    raw = environ.get(NETWORKS_VARIABLE, "").strip()
    networks = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{NETWORKS_VARIABLE}: {item!r} is not a network; write CIDR ranges separated by "
                             "commas, e.g. 10.20.0.0/16,fd00::/8") from None  # fmt: skip
    return networks


@dataclass(frozen=True)
class Destination:
    """Where one attempt of a notification goes: the checked address, or why not (and whether ever)."""

    addresses: tuple[str, ...] = ()  # where to try, in order (all checked); the host alone through a proxy
    problem: str = ""
    permanent: bool = False


def proxied(url: str) -> bool:
    """Whether the HTTP client sends ``url`` through a proxy named in the environment (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, less NO_PROXY), as httpx does by default."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    host = (parts.hostname or "").lower()
    for entry in filter(None, (e.strip().lower() for e in proxies.get("no", "").split(","))):
        domain = entry.split("://", 1)[-1].lstrip("*").lstrip(".")
        if entry == "*" or host == domain or host.endswith("." + domain):
            return False
    return True


async def check_destination(url: str, allowed: Sequence[IPNetwork], *, via_proxy: bool = False) -> Destination:
    """Resolve ``url``'s host once and check every address: each must be public, or in a network the operator
    allowed. The request then goes to the checked address, never to a second lookup of the name.

    A repository's policy names the URL, so without this anyone who can merge a policy could make the gonogo
    server call its own network (a cloud metadata address, an internal admin port); and its owner owns the
    name's DNS too, so a name that answers a public address to the check and a private one to a second
    lookup (DNS rebinding) would get there all the same. A host that does not resolve now is retried later.

    ``via_proxy``: the request goes through an egress proxy, which resolves the name itself (this server may
    have no DNS for the outside at all): a name that does not resolve here is left to the proxy, and one
    that does is still refused when it leads inside. The proxy is then what keeps the inside out.
    """
    try:
        named = httpx.URL(url)  # the host as the client would look it up (IDNA), and the port
        host, port = named.host, named.port or (443 if named.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError):
        return Destination(problem=f"{redact_url(url)} is not a valid URL", permanent=True)
    if not host:
        return Destination(problem=f"{redact_url(url)} names no host", permanent=True)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        if via_proxy:
            return Destination(addresses=(host,))
        return Destination(problem=f"{redact_url(url)} does not resolve ({type(exc).__name__}); tried again later")
    addresses = [str(info[4][0]) for info in infos]
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global and not any(address in net for net in allowed):
            return Destination(problem=(
                f"{redact_url(url)} resolves to {address}, a private, loopback or link-local address: gonogo "
                f"sends notifications only to public addresses unless {NETWORKS_VARIABLE} lists the network"),
                permanent=True)  # fmt: skip
    if not addresses:
        return Destination(problem=f"{redact_url(url)} does not resolve; tried again later")
    if via_proxy:
        return Destination(addresses=(host,))
    # the first address of each family, in the resolver's order: a dual-stack name on a server without IPv6
    # is still reached over IPv4, as the client's own connection attempts would have
    first_of_family = {":" in a: a for a in reversed(addresses)}
    return Destination(addresses=tuple(sorted(first_of_family.values(), key=addresses.index)))


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` with its host replaced by ``address``, and the Host header and TLS server name of the original
    host, so the request reaches the checked address and is still verified as being for the named host.

    The connection is closed after the request: the client pools connections by address, and would hand
    another name at the same address (receivers behind one load balancer) a TLS connection whose
    certificate was checked for this name only.
    """
    parts = urlsplit(url)
    named = httpx.URL(url)  # the host as the client sends it: IDNA-encoded, default port left out
    userinfo = parts.netloc.rpartition("@")[0]
    literal = f"[{address.replace('%', '%25')}]" if ":" in address else address
    netloc = (f"{userinfo}@" if userinfo else "") + literal + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {"sni_hostname": named.host} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": named.netloc.decode("ascii"), "Connection": "close"}, extensions


class ChannelSpec(Protocol):
    """What a policy notification entry provides (rules.policy.Notification fits)."""

    type: str
    url: str
    secret_env: str | None


class PreparedMessage(NamedTuple):
    """One message ready to enqueue: channel, destination, JSON body and the secret's variable name."""

    channel: Channel
    url: str
    body: dict[str, Any]
    secret_env: str | None


class NotifyError(Exception):
    """A notification cannot be built or queued; the message says what to fix."""


# --- message builders -----------------------------------------------------------------------

_HEADLINES: dict[str, str] = {
    "escalated": "Decision needed: {repository} to {environment}",
    "reminded": "Reminder, decision still needed: {repository} to {environment}",
    "approved": "Approved{by}: {repository} to {environment}",
    "rejected": "Rejected{by}: {repository} to {environment}",
    "overridden": "BREAK-GLASS OVERRIDE{by}: {repository} to {environment}",
    "expired": "Expired without a decision, rejected: {repository} to {environment}",
}
_TEAMS_COLOR = {"escalated": "Warning", "reminded": "Warning", "approved": "Good", "rejected": "Attention",
                "overridden": "Attention", "expired": "Attention"}  # fmt: skip
_LINK_LABELS = (("check_run", "Check run"), ("workflow_run", "Workflow run"), ("pull_request", "Pull request"),
                ("deployment", "Deployment"))  # fmt: skip
MAX_REASONS = 8


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _headline(event: str, s: Mapping[str, Any]) -> str:
    actor = s.get("actor")
    by = f" by @{actor}" if actor and event in ("approved", "rejected", "overridden") else ""
    verdict = str(s.get("verdict") or "")
    if event == "approved" and not actor and s.get("mode") == "dry-run" and verdict != "go":
        # a dry run approves whatever it found: the channel must not read this as the release judged fit
        return (f"Dry run: approved although the verdict is {verdict.upper() or 'unknown'}: "
                f"{s.get('repository', '?')} to {s.get('environment', '?')}")  # fmt: skip
    return _HEADLINES[event].format(
        by=by, repository=s.get("repository", "?"), environment=s.get("environment", "?")
    )


def _facts(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = [("Verdict", str(s.get("verdict", "?")))]
    if s.get("readiness_score") is not None:
        out.append(("Readiness", f"{float(s['readiness_score']):.0f}/100"))
    if s.get("risk") is not None:
        out.append(("Risk of failure", f"{float(s['risk']) * 100:.0f}%"))
    if s.get("confidence") is not None:
        out.append(("Confidence", f"{float(s['confidence']) * 100:.0f}%"))
    if s.get("sha"):
        out.append(("Commit", str(s["sha"])[:12]))
    if s.get("reviewers"):
        out.append(("Who decides", ", ".join(f"@{r.lstrip('@')}" for r in s["reviewers"])))
    return out


def _reasons(s: Mapping[str, Any]) -> list[str]:
    reasons = [str(r) for r in s.get("reasons") or []]
    extra = len(reasons) - MAX_REASONS
    return reasons[:MAX_REASONS] + ([f"... and {extra} more in the check run"] if extra > 0 else [])


def _links(links: Mapping[str, str | None]) -> list[tuple[str, str]]:
    return [(label, str(links[key])) for key, label in _LINK_LABELS if links.get(key)]


def _slack_escape(text: str) -> str:
    # Slack mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: str, s: Mapping[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:
    """Build a Slack incoming-webhook body: header, reasons, context facts and link buttons."""
    headline = _headline(event, s)
    lines = []
    if s.get("comment"):
        lines.append(f"*Reason given:* {_slack_escape(str(s['comment']))}")
    reasons = _reasons(s)
    if reasons:
        lines.append("*Why:*\n" + "\n".join(f"\u2022 {_slack_escape(r)}" for r in reasons))
    if not lines:
        lines.append(f"Verdict: *{_slack_escape(str(s.get('verdict', '?')))}*")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(headline, 150), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip("\n".join(lines), 3000)}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": _clip(f"*{_slack_escape(k)}:* {_slack_escape(v)}", 2000)} for k, v in _facts(s)[:10]
        ]},
    ]  # fmt: skip
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url, "action_id": f"gonogo-open-{i}"}
        for i, (label, url) in enumerate(_links(links))
        if len(url) <= 3000
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": _clip(headline, 3000), "blocks": blocks}


def _teams_text(text: str) -> str:
    # TextBlocks and fact values read Markdown: text from the change (test, check and file names in the
    # reasons) stays on its line, and a zero-width space keeps "[label](url)" from becoming a link
    return " ".join(text.splitlines()).replace("](", "]\u200b(")


def teams_body(event: str, s: Mapping[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:
    """Build a Microsoft Teams message carrying one Adaptive Card (1.4) with facts and link actions."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _teams_text(_headline(event, s)), "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": _TEAMS_COLOR[event]},
    ]  # fmt: skip
    if s.get("comment"):
        body.append({"type": "TextBlock", "text": f"Reason given: {_teams_text(str(s['comment']))}", "wrap": True})
    reasons = _reasons(s)
    if reasons:
        body.append({"type": "TextBlock", "text": "\n".join(f"- {_teams_text(r)}" for r in reasons), "wrap": True})
    body.append({"type": "FactSet", "facts": [{"title": k, "value": _teams_text(v)} for k, v in _facts(s)]})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in _links(links)],
        "msteams": {"width": "Full"},
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}],
    }


_GENERIC_FIELDS = (
    "repository", "environment", "sha", "deployment_id", "deployment_key", "verdict", "action", "readiness_score",
    "risk", "confidence", "reasons", "blocking", "reviewers", "actor", "comment", "mode", "occurred_at",
)  # fmt: skip


def webhook_body(event: str, s: Mapping[str, Any], links: Mapping[str, str | None]) -> dict[str, Any]:
    """Build the generic JSON webhook body (schema ``gonogo.notification/v1``)."""
    out: dict[str, Any] = {"schema": BODY_SCHEMA, "event": event, "summary": _headline(event, s)}
    out.update({k: s.get(k) for k in _GENERIC_FIELDS})
    out["links"] = {k: v for k, v in links.items() if v}
    return out


_BUILDERS: dict[str, Callable[[str, Mapping[str, Any], Mapping[str, str | None]], dict[str, Any]]] = {
    "slack": slack_body, "teams": teams_body, "webhook": webhook_body,
}  # fmt: skip


def build_messages(
    event: NotifyEvent,
    decision_summary: Mapping[str, Any],
    links: Mapping[str, str | None],
    channels: Iterable[ChannelSpec],
) -> list[PreparedMessage]:
    """Build one message per configured channel for a state change."""
    if event not in EVENTS:
        raise NotifyError(f"unknown notification event {event!r}; use one of {', '.join(EVENTS)}")
    out = []
    for ch in channels:
        if ch.type not in _BUILDERS:
            raise NotifyError(f"unknown notification channel {ch.type!r}; use slack, teams or webhook")
        body = _BUILDERS[ch.type](event, decision_summary, links)
        secret_env = ch.secret_env if ch.type == "webhook" else None
        out.append(PreparedMessage(ch.type, ch.url, body, secret_env))  # type: ignore[arg-type]
    return out


def summary_from_decision(
    decision: Decision, *, actor: str | None = None, comment: str | None = None, deployment_key: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Extract the fields notifications show from a ``rules.types.Decision``."""
    reviewers = [*decision.reviewers.users, *decision.reviewers.teams]
    return {
        "repository": decision.repository, "environment": decision.environment, "sha": decision.sha,
        "deployment_id": decision.deployment_id, "deployment_key": deployment_key, "verdict": decision.verdict,
        "action": decision.action, "readiness_score": decision.readiness_score, "risk": decision.risk.probability,
        "confidence": decision.confidence,
        "reasons": list(decision.reasons), "blocking": list(decision.blocking), "reviewers": reviewers,
        "actor": actor, "comment": comment, "mode": decision.mode,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
    }  # fmt: skip


# --- the outbox -----------------------------------------------------------------------------


def _conn(conn_or_session: Connection | Session) -> Connection:
    return conn_or_session.connection() if isinstance(conn_or_session, Session) else conn_or_session


_DEPLOYMENT_KEY_ROOM = 340  # of the outbox key's 400 characters; the event, index and URL digest take the rest
_KEY_TAG = 16  # hex digits of the whole deployment key's hash that end a deployment key cut to fit


def message_key(deployment_key: str, event: str, index: int, url: str) -> str:
    """A stable key for one message of one state change to one channel (the idempotency key).

    A deployment key too long for the room (an owner/name of 140 characters and an environment of 255 make
    one of 400) is cut and ends in its whole hash: keys differing only at the end, as the attempts of one run
    do, stay apart.
    """
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    part = deployment_key
    if len(part) > _DEPLOYMENT_KEY_ROOM:
        tag = hashlib.sha256(deployment_key.encode()).hexdigest()[:_KEY_TAG]
        part = f"{deployment_key[: _DEPLOYMENT_KEY_ROOM - _KEY_TAG - 1]}~{tag}"
    return f"{part}|{event}|{index}-{digest}"


def _deployment_key_of(conn: Connection, part: str) -> str | None:
    """The deployment key a message key begins with: ``part`` itself, or the deployment whose key was cut
    to it (found by its prefix and hash)."""
    prefix, _, tag = part.rpartition("~")
    if len(part) != _DEPLOYMENT_KEY_ROOM or len(tag) != _KEY_TAG or "/" in tag:
        return part  # a deployment key ends in "/<attempt>", never in "~<hash>"
    candidates = conn.execute(select(Deployment.key).where(Deployment.key.startswith(prefix, autoescape=True))).scalars()
    return next((k for k in candidates if hashlib.sha256(k.encode()).hexdigest()[:_KEY_TAG] == tag), None)


def enqueue(
    conn_or_session: Connection | Session,
    *,
    key: str,
    channel: Channel,
    url: str,
    body: Mapping[str, Any],
    secret_env: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Queue a message in the caller's transaction; False if a message with this key already exists."""
    if channel not in CHANNELS:
        raise NotifyError(f"unknown channel {channel!r}; use slack, teams or webhook")
    if not url.startswith(("https://", "http://")):
        raise NotifyError(f"notification URL for {channel} is not http(s): {redact_url(url)}")
    if len(key) > 400:
        raise NotifyError("notification key is longer than 400 characters; use notify.message_key")
    conn = _conn(conn_or_session)
    moment = now or datetime.now(UTC)
    row = {
        "key": key, "channel": channel, "url": url, "body": dict(body), "secret_env": secret_env, "state": "pending",
        "attempts": 0, "next_attempt_at": moment, "created_at": moment,
    }  # fmt: skip
    insert = db.insert_for(conn)
    stmt = insert(OutboxMessage).values(**row).on_conflict_do_nothing(index_elements=["key"])
    result = conn.execute(stmt.returning(OutboxMessage.id))
    return result.first() is not None


def enqueue_event(
    conn_or_session: Connection | Session,
    *,
    deployment_key: str,
    event: NotifyEvent,
    decision_summary: Mapping[str, Any],
    links: Mapping[str, str | None],
    channels: Sequence[ChannelSpec],
    now: datetime | None = None,
) -> int:
    """Build and queue this state change's message for every channel; return how many were new."""
    summary = {**decision_summary, "deployment_key": decision_summary.get("deployment_key") or deployment_key}
    new = 0
    for i, msg in enumerate(build_messages(event, summary, links, channels)):
        key = message_key(deployment_key, event, i, msg.url)
        new += enqueue(conn_or_session, key=key, channel=msg.channel, url=msg.url, body=msg.body,
                       secret_env=msg.secret_env, now=now)  # fmt: skip
    return new


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    # The signed bytes start with the time, so they are never a whole webhook body: a notification's
    # signature can never pass as GitHub's X-Hub-Signature-256, even under the same secret.
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Return the ``t=<timestamp>,v1=<hex>`` signature: HMAC-SHA256 over ``"<timestamp>." + body``."""
    return f"t={timestamp},{SIGNATURE_VERSION}={_mac(secret, timestamp, body)}"


def verify_signature(secret: str, body: bytes, header: str | None, *, now: float,
                     tolerance: float = SIGNATURE_TOLERANCE_SECONDS) -> bool:  # fmt: skip
    """Check a notification signature as a receiver should: the MAC in constant time, and a fresh timestamp."""
    if not header:
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(_mac(secret, timestamp, body), fields.get(SIGNATURE_VERSION, ""))


def delivery_id(key: str) -> str:
    """The id sent with every attempt of one message, so receivers can drop repeats."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "gonogo-outbox:" + key))


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Serialise a body to the exact bytes that are sent and signed."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class ClaimedMessage:
    """An outbox message a dispatcher holds a lease on."""

    id: int
    key: str
    channel: str
    url: str
    body: dict[str, Any]
    secret_env: str | None
    attempts: int
    lease_token: str


MESSAGES = JobTable(OutboxMessage, working="sending", error_limit=2000)
_CLAIMED_COLUMNS = (
    OutboxMessage.id, OutboxMessage.key, OutboxMessage.channel, OutboxMessage.url, OutboxMessage.body,
    OutboxMessage.secret_env, OutboxMessage.attempts,
)  # fmt: skip


def claim(engine: Engine, owner: str, lease_seconds: float, limit: int = 10) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due messages: pending ones, and sending ones whose lease expired."""
    token, rows = MESSAGES.claim(engine, owner, lease_seconds, limit, _CLAIMED_COLUMNS)
    return [
        ClaimedMessage(id=r.id, key=r.key, channel=r.channel, url=r.url, body=r.body, secret_env=r.secret_env,
                       attempts=r.attempts, lease_token=token)
        for r in rows
    ]  # fmt: skip


def _audit_outcome(conn: Connection, msg: ClaimedMessage, outcome: str, detail: dict[str, Any]) -> None:
    deployment_key, event = None, None
    parts = msg.key.rsplit("|", 2)
    if len(parts) == 3:
        deployment_key, event = _deployment_key_of(conn, parts[0]), parts[1]
    audit.append(conn, "notification", deployment_key=deployment_key, data={
        "key": msg.key, "event": event, "channel": msg.channel, "destination": redact_url(msg.url),
        "outcome": outcome, "attempts": msg.attempts, **detail,
    })  # fmt: skip


def mark_sent(engine: Engine, msg: ClaimedMessage, status_code: int) -> bool:
    """Record a delivery if we still hold the lease; False if another dispatcher took the message over."""
    with engine.begin() as conn:
        # a finished message no longer needs the URL's secret part
        if not MESSAGES.finish(conn, msg.id, msg.lease_token, "sent",
                               {"sent_at": datetime.now(UTC), "last_error": None, "url": redact_url(msg.url)}):  # fmt: skip
            return False
        _audit_outcome(conn, msg, "sent", {"http_status": status_code})
    return True


def mark_failed(
    engine: Engine, msg: ClaimedMessage, error: str, *, permanent: bool, max_attempts: int, base: float,
    maximum: float, not_before: float = 0.0,
) -> str | None:  # fmt: skip
    """Schedule a retry or bury the message; return the new state, or None if the lease was lost."""
    with engine.begin() as conn:
        state = MESSAGES.fail(conn, msg.id, msg.lease_token, msg.attempts, error, permanent=permanent,
                              max_attempts=max_attempts, base=base, maximum=maximum, not_before=not_before,
                              dead_values={"url": redact_url(msg.url)})  # a dead message is never sent again  # fmt: skip
        if state == "dead":
            _audit_outcome(conn, msg, "dead", {"error": error[:500]})
    return state


def counts(engine: Engine) -> dict[str, int]:
    """Number of outbox messages per state."""
    return MESSAGES.counts(engine)


# --- the dispatcher -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    ok: bool
    status: int | None
    error: str
    permanent: bool = False
    retry_after: float = 0.0


def _retry_after(value: str | None) -> float:
    if value and value.strip().isdigit():
        return float(value.strip())
    return 0.0


class OutboxDispatcher:
    """Deliver outbox messages: claim with a lease, POST, retry with backoff, mark sent exactly once."""

    def __init__(
        self,
        engine: Engine,
        http_client_factory: Callable[[], httpx.AsyncClient] | None = None,
        *,
        name: str | None = None,
        timeout: float = 10.0,
        lease_seconds: float = 60.0,
        max_attempts: int = 10,
        retry_base_seconds: float = 2.0,
        retry_max_seconds: float = 600.0,
        batch_size: int = 10,
        poll_seconds: float = 2.0,
        environ: Mapping[str, str] | None = None,
        networks: str | None = None,
    ) -> None:
        """``networks``: the private networks notifications may reach (CIDR ranges, comma-separated); None reads
        ``GONOGO_NOTIFICATION_NETWORKS`` from ``environ``."""
        if lease_seconds <= 2 * timeout:
            raise ValueError("lease_seconds must exceed twice the HTTP timeout, or a slow send loses its lease")
        self.engine = engine
        self.http_client_factory = http_client_factory or (lambda: httpx.AsyncClient(timeout=timeout))
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:outbox"
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.environ = os.environ if environ is None else environ
        self.networks = notification_networks(
            self.environ if networks is None else {NETWORKS_VARIABLE: networks})
        self.sent = 0
        self._doorbell: Doorbell[None] = Doorbell()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # lifecycle ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Deliver newly queued messages now instead of at the next poll."""
        self._doorbell.ring()

    def start(self) -> None:
        """Run ``run_forever`` as a background task of the running event loop."""
        self._stop = asyncio.Event()
        self._doorbell = Doorbell()
        self._task = asyncio.get_running_loop().create_task(self.run_forever(self._stop), name="outbox-dispatcher")

    async def stop(self, grace: float = 15.0) -> None:
        """Stop the background task, letting an in-flight batch finish within ``grace`` seconds."""
        self._stop.set()
        self._doorbell.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                log.warning("outbox.stop_timeout", extra={"grace": grace})
            self._task = None

    async def run_forever(self, stop_event: asyncio.Event) -> None:
        """Deliver due messages until ``stop_event`` is set; never raises on a delivery or database error."""
        async with self.http_client_factory() as client:

            async def step() -> bool:
                return await self._step(client) > 0

            await ConsumerLoop(
                name="outbox", step=step, doorbell=self._doorbell, stop=stop_event, poll_seconds=self.poll_seconds,
                idle_wait=self._idle_wait,
            ).run()  # fmt: skip

    async def _idle_wait(self) -> float:
        nxt = await asyncio.to_thread(MESSAGES.seconds_until_due, self.engine)
        # a due row another replica holds right now must not make us spin
        return self.poll_seconds if nxt is None else max(min(self.poll_seconds, nxt), 0.05)

    async def run_until_idle(self, timeout: float = 60.0) -> int:
        """Deliver until no message is pending or being sent (waiting out retry delays); return how many were sent."""
        before = self.sent
        async with asyncio.timeout(timeout), self.http_client_factory() as client:
            while True:
                if await self._step(client):
                    continue
                nxt = await asyncio.to_thread(MESSAGES.seconds_until_due, self.engine)
                if nxt is None:
                    return self.sent - before
                await asyncio.sleep(min(max(nxt, 0.01), self.poll_seconds))

    async def step(self) -> int:
        """Claim and deliver one batch of due messages; return how many were attempted."""
        async with self.http_client_factory() as client:
            return await self._step(client)

    # delivery -------------------------------------------------------------------------------

    async def _step(self, client: httpx.AsyncClient) -> int:
        batch = await asyncio.to_thread(claim, self.engine, self.name, self.lease_seconds, self.batch_size)
        if batch:
            await asyncio.gather(*(self._deliver(client, msg) for msg in batch))
        return len(batch)

    def _request(self, msg: ClaimedMessage) -> tuple[bytes, dict[str, str]]:
        body = encode_body(msg.body)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   DELIVERY_HEADER: delivery_id(msg.key)}  # fmt: skip
        event = msg.body.get("event") if msg.channel == "webhook" else None
        if isinstance(event, str):
            headers[EVENT_HEADER] = event
        if msg.secret_env:
            if not msg.secret_env.startswith(NOTIFY_SECRET_PREFIX):  # queued under an older, laxer policy check
                raise NotifyError(f"secret_env {msg.secret_env} does not start with {NOTIFY_SECRET_PREFIX}: gonogo signs "
                                  f"notifications only with secrets meant for them; rename the variable in the policy")  # fmt: skip
            secret = self.environ.get(msg.secret_env, "")
            if not secret:
                raise NotifyError(f"environment variable {msg.secret_env} is not set: set it to the secret shared "
                                  f"with the receiver, or remove secret_env from the policy's notification entry")  # fmt: skip
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(secret, body, timestamp)
        return body, headers

    async def _post(self, client: httpx.AsyncClient, msg: ClaimedMessage) -> _Result:
        try:
            body, headers = self._request(msg)
        except NotifyError as exc:
            return _Result(False, None, str(exc))
        via_proxy = proxied(msg.url)
        destination = await check_destination(msg.url, self.networks, via_proxy=via_proxy)
        if not destination.addresses:
            return _Result(False, None, destination.problem, permanent=destination.permanent)
        for i, address in enumerate(destination.addresses):
            target, host, extensions = (msg.url, {}, {}) if via_proxy else pinned_request(msg.url, address)
            try:
                response = await client.post(target, content=body, headers={**headers, **host}, timeout=self.timeout,
                                             extensions=extensions)  # fmt: skip
                break
            except httpx.TimeoutException:
                return _Result(False, None, f"no answer from {redact_url(msg.url)} within {self.timeout:g} s")
            except httpx.ConnectError:
                if i + 1 < len(destination.addresses):
                    continue  # nothing was sent: the next address
                return _Result(False, None, f"ConnectError reaching {redact_url(msg.url)}")
            except httpx.TransportError as exc:
                # the exception text may quote the URL, whose path is a secret for chat webhooks
                return _Result(False, None, f"{type(exc).__name__} reaching {redact_url(msg.url)}")
        status = response.status_code
        if 200 <= status < 300:
            return _Result(True, status, "")
        # the receiver's body is not kept: it may echo the request, URL and all (and is the receiver's to log)
        phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
        error = f"HTTP {status}{phrase} from {redact_url(msg.url)}"
        if status in _RETRYABLE_STATUS or status >= 500:
            return _Result(False, status, error, retry_after=_retry_after(response.headers.get("retry-after")))
        if 300 <= status < 400:
            error += " (the URL redirects; configure the final URL)"
        return _Result(False, status, error, permanent=True)

    async def _deliver(self, client: httpx.AsyncClient, msg: ClaimedMessage) -> None:
        fields = {"key": msg.key, "channel": msg.channel, "destination": redact_url(msg.url), "attempt": msg.attempts}
        result = await self._post(client, msg)
        if result.ok:
            if await asyncio.to_thread(mark_sent, self.engine, msg, result.status or 200):
                self.sent += 1
                log.info("notification.sent", extra=fields)
            else:
                log.warning("notification.lease_lost", extra=fields)
            return
        state = await asyncio.to_thread(
            mark_failed, self.engine, msg, result.error, permanent=result.permanent, max_attempts=self.max_attempts,
            base=self.retry_base_seconds, maximum=self.retry_max_seconds, not_before=result.retry_after,
        )  # fmt: skip
        level = logging.ERROR if state == "dead" else logging.WARNING
        log.log(level, "notification.failed", extra={**fields, "state": state, "error": result.error})
