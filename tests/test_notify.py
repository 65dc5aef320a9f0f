"""Notifications: message bodies, idempotent outbox, and delivery to a real local receiver with retries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from github_app import audit, db, notify
from github_app.db.models import AuditEntry, OutboxMessage
from github_app.serving import ServerThread
from rules.policy import Notification

SECRET = "receiver-shared-secret-\u00e9"
SUMMARY: dict[str, Any] = {
    "repository": "octo/shop", "environment": "production", "sha": "a" * 40, "deployment_id": "octo/shop/77/production/1",
    "verdict": "escalate", "action": "escalate", "readiness_score": 71.4, "risk": 0.31, "confidence": 0.9,
    "reasons": ["GNG-SEC-001: 2 high <vulnerabilities> & more", "Risk 31% is above the approval limit"] + [f"r{i}" for i in range(10)],
    "blocking": [], "reviewers": ["alice", "octo/release-managers"], "actor": None, "comment": None, "mode": "enforce",
}  # fmt: skip
LINKS = {
    "check_run": "https://github.com/octo/shop/runs/5",
    "workflow_run": "https://github.com/octo/shop/actions/runs/77",
    "pull_request": None,
}


class Receiver:
    """A chat/webhook stand-in: fails the first ``failures`` attempts of each message, checks signatures."""

    def __init__(self, failures: int = 3, status: int = 500) -> None:
        self.failures = failures
        self.status = status
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.delivered: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.bad_signatures = 0
        self.app = Starlette(routes=[Route("/{channel}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Any:
        raw = await request.body()
        channel = request.path_params["channel"]
        delivery = request.headers.get(notify.DELIVERY_HEADER, "")
        if channel == "webhook":
            # the documented scheme, recomputed by hand: HMAC-SHA256 over "<timestamp>." + body, timestamp fresh
            stamp = request.headers.get(notify.TIMESTAMP_HEADER, "0")
            expected = f"t={stamp},v1=" + hmac.new(SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
            fresh = abs(time.time() - int(stamp)) <= notify.SIGNATURE_TOLERANCE_SECONDS
            if not (fresh and hmac.compare_digest(expected, request.headers.get(notify.SIGNATURE_HEADER, ""))):
                with self.lock:
                    self.bad_signatures += 1
                return PlainTextResponse("bad signature", 401)
        with self.lock:
            self.attempts[delivery] += 1
            if self.attempts[delivery] <= self.failures:
                return PlainTextResponse("try later", self.status)
            self.delivered[delivery].append({"channel": channel, "body": json.loads(raw), "headers": dict(request.headers)})
        return JSONResponse({"ok": True})


def _channels(base: str) -> list[Notification]:
    return [
        Notification(type="slack", url=f"{base}/slack"),
        Notification(type="teams", url=f"{base}/teams"),
        Notification(type="webhook", url=f"{base}/webhook", secret_env="GONOGO_NOTIFY_TEST_HOOK"),
    ]


def _dispatcher(engine: Engine, **kw: Any) -> notify.OutboxDispatcher:
    options: dict[str, Any] = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "poll_seconds": 0.05,
                               "environ": {"GONOGO_NOTIFY_TEST_HOOK": SECRET, notify.NETWORKS_VARIABLE: "127.0.0.0/8"},
                               "timeout": 5.0, "lease_seconds": 30.0}  # the receivers listen on this machine  # fmt: skip
    options.update(kw)
    return notify.OutboxDispatcher(engine, **options)


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


# --- bodies ---------------------------------------------------------------------------------


def _check_slack(body: dict[str, Any]) -> None:
    """Structural checks against Slack's Block Kit limits for incoming webhooks."""
    assert isinstance(body["text"], str) and body["text"]
    blocks = body["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "context", "actions", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert block["text"]["type"] == "mrkdwn" and 0 < len(block["text"]["text"]) <= 3000
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(e["type"] in {"mrkdwn", "plain_text"} and len(e["text"]) <= 2000 for e in block["elements"])
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert button["type"] == "button" and button["text"]["type"] == "plain_text"
                assert 0 < len(button["text"]["text"]) <= 75 and button["url"].startswith("https://")
                assert len(button["action_id"]) <= 255
    assert len({b["action_id"] for blk in blocks if blk["type"] == "actions" for b in blk["elements"]}) == sum(
        len(blk["elements"]) for blk in blocks if blk["type"] == "actions"
    )


def _check_teams(body: dict[str, Any]) -> None:
    """Structural checks for a Teams webhook message with one Adaptive Card attachment."""
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].startswith("http")
    for element in card["body"]:
        assert element["type"] in {"TextBlock", "FactSet"}
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        else:
            assert all(set(f) == {"title", "value"} and isinstance(f["value"], str) for f in element["facts"])
    for action in card["actions"]:
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://") and action["title"]


@pytest.mark.parametrize("event", notify.EVENTS)
def test_every_event_builds_valid_slack_teams_and_webhook_bodies(event: str) -> None:
    summary = dict(SUMMARY, actor="bob" if event in ("approved", "rejected", "overridden") else None,
                   comment="tested on staging" if event != "escalated" else None)  # fmt: skip
    msgs = notify.build_messages(event, summary, LINKS, _channels("https://hooks.example.com"))  # type: ignore[arg-type]
    assert [m.channel for m in msgs] == ["slack", "teams", "webhook"]
    slack, teams, hook = (m.body for m in msgs)
    _check_slack(slack)
    _check_teams(teams)
    assert hook["schema"] == notify.BODY_SCHEMA and hook["event"] == event
    assert hook["links"] == {"check_run": LINKS["check_run"], "workflow_run": LINKS["workflow_run"]}
    assert msgs[2].secret_env == "GONOGO_NOTIFY_TEST_HOOK" and msgs[0].secret_env is None
    if summary["actor"]:
        assert "@bob" in slack["blocks"][0]["text"]["text"]
    json.dumps([m.body for m in msgs])  # plain JSON all the way down


def test_slack_body_escapes_control_characters_and_caps_reasons() -> None:
    (msg,) = notify.build_messages("escalated", SUMMARY, LINKS, [Notification(type="slack", url="https://h.example/x")])
    section = msg.body["blocks"][1]["text"]["text"]
    assert "&lt;vulnerabilities&gt; &amp; more" in section and "<vulnerabilities>" not in section
    assert "and 4 more in the check run" in section
    labels = [b["text"]["text"] for b in msg.body["blocks"][-1]["elements"]]
    assert labels == ["Check run", "Workflow run"]
    long = dict(SUMMARY, repository="o/" + "x" * 300)
    (msg,) = notify.build_messages("escalated", long, {}, [Notification(type="slack", url="https://h.example/x")])
    _check_slack(msg.body)
    assert msg.body["blocks"][-1]["type"] == "context"  # no links, no buttons


def test_unknown_event_or_channel_is_refused() -> None:
    with pytest.raises(notify.NotifyError, match="unknown notification event"):
        notify.build_messages("exploded", SUMMARY, LINKS, [])  # type: ignore[arg-type]


def test_summary_from_a_real_decision() -> None:
    from rules.pipeline import evaluate
    from rules.policy import default_policy
    from rules.samples import clean_evidence

    decision = evaluate(clean_evidence(), default_policy())
    summary = notify.summary_from_decision(decision, actor="bob", deployment_key="k")
    assert summary["repository"] == decision.repository and summary["risk"] == decision.risk.probability
    (msg,) = notify.build_messages("approved", summary, LINKS, [Notification(type="slack", url="https://h.example/x")])
    _check_slack(msg.body)


# --- outbox ---------------------------------------------------------------------------------


def test_enqueue_is_idempotent_by_key_and_part_of_the_callers_transaction(engine: Engine) -> None:
    msg = notify.build_messages("escalated", SUMMARY, LINKS, _channels("https://hooks.example.com"))[0]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert notify.enqueue(conn, key="k1", channel=msg.channel, url=msg.url, body=msg.body)
        raise RuntimeError("decision failed to commit")
    with Session(engine) as session, session.begin():
        assert notify.enqueue(session, key="k1", channel=msg.channel, url=msg.url, body=msg.body)
    with engine.begin() as conn:
        assert not notify.enqueue(conn, key="k1", channel=msg.channel, url=msg.url, body={"other": True})
    assert notify.counts(engine) == {"pending": 1}
    with pytest.raises(notify.NotifyError, match="not http"), engine.begin() as conn:
        notify.enqueue(conn, key="k2", channel="slack", url="ftp://x", body={})


def test_receiver_failing_three_times_still_gets_each_message_exactly_once(engine: Engine) -> None:
    receiver = Receiver(failures=3)
    with ServerThread(receiver.app) as srv:
        channels = _channels(srv.url)
        with engine.begin() as conn:
            audit.append(conn, "decision", deployment_key="octo/shop/77/production/1", data={"verdict": "escalate"})
            new = notify.enqueue_event(conn, deployment_key="octo/shop/77/production/1", event="escalated",
                                       decision_summary=SUMMARY, links=LINKS, channels=channels)  # fmt: skip
        assert new == 3
        dispatcher = _dispatcher(engine)
        sent = asyncio.run(dispatcher.run_until_idle(timeout=30))
        assert sent == 3

        # the same state change again (a redelivered webhook, a re-run after a crash): nothing new goes out
        with engine.begin() as conn:
            again = notify.enqueue_event(conn, deployment_key="octo/shop/77/production/1", event="escalated",
                                         decision_summary=SUMMARY, links=LINKS, channels=channels)  # fmt: skip
        assert again == 0
        assert asyncio.run(dispatcher.run_until_idle(timeout=10)) == 0

    assert receiver.bad_signatures == 0
    assert len(receiver.delivered) == 3
    assert all(len(v) == 1 for v in receiver.delivered.values())
    assert all(n == 4 for n in receiver.attempts.values())
    by_channel = {v[0]["channel"]: v[0] for v in receiver.delivered.values()}
    _check_slack(by_channel["slack"]["body"])
    _check_teams(by_channel["teams"]["body"])
    assert by_channel["webhook"]["headers"]["x-gonogo-event"] == "escalated"
    assert by_channel["webhook"]["body"]["deployment_key"] == "octo/shop/77/production/1"
    with Session(engine) as session:
        rows = session.scalars(select(OutboxMessage)).all()
        assert {(r.state, r.attempts) for r in rows} == {("sent", 4)}
        notes = session.scalars(select(AuditEntry).where(AuditEntry.kind == "notification")).all()
    assert len(notes) == 3 and {n.data["outcome"] for n in notes} == {"sent"}
    assert all(n.deployment_key == "octo/shop/77/production/1" and "/slack" not in n.data["destination"] for n in notes)
    assert audit.verify(engine).ok


def test_permanent_errors_and_exhausted_retries_end_dead_and_are_audited(engine: Engine) -> None:
    receiver = Receiver(failures=100, status=400)
    flaky = Receiver(failures=100, status=503)
    with ServerThread(receiver.app) as bad, ServerThread(flaky.app) as down:
        with engine.begin() as conn:
            notify.enqueue(conn, key="bad", channel="slack", url=f"{bad.url}/slack", body={"text": "x"})
            notify.enqueue(conn, key="down", channel="slack", url=f"{down.url}/slack", body={"text": "x"})
        asyncio.run(_dispatcher(engine, max_attempts=3).run_until_idle(timeout=30))
    with Session(engine) as session:
        rows = {r.key: r for r in session.scalars(select(OutboxMessage))}
        notes = session.scalars(select(AuditEntry).where(AuditEntry.kind == "notification")).all()
    assert (rows["bad"].state, rows["bad"].attempts) == ("dead", 1)
    assert "HTTP 400" in (rows["bad"].last_error or "")
    assert (rows["down"].state, rows["down"].attempts) == ("dead", 3)
    assert sum(flaky.attempts.values()) == 3
    assert sorted(n.data["key"] for n in notes) == ["bad", "down"]


def test_missing_secret_is_never_sent_unsigned(engine: Engine) -> None:
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        with engine.begin() as conn:
            notify.enqueue(conn, key="s", channel="webhook", url=f"{srv.url}/webhook", body={"event": "approved"},
                           secret_env="GONOGO_NOTIFY_UNSET")  # fmt: skip
        asyncio.run(_dispatcher(engine, max_attempts=2, environ={}).run_until_idle(timeout=10))
    with Session(engine) as session:
        row = session.scalars(select(OutboxMessage)).one()
    assert row.state == "dead" and "GONOGO_NOTIFY_UNSET is not set" in (row.last_error or "")
    assert sum(receiver.attempts.values()) == 0 and receiver.bad_signatures == 0


def test_unreachable_receiver_is_retried_and_the_url_path_stays_out_of_errors(engine: Engine) -> None:
    from github_app.serving import free_port

    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRETTOKEN"
    with engine.begin() as conn:
        notify.enqueue(conn, key="gone", channel="slack", url=url, body={"text": "x"})
    asyncio.run(_dispatcher(engine, max_attempts=2).run_until_idle(timeout=10))
    with Session(engine) as session:
        row = session.scalars(select(OutboxMessage)).one()
        note = session.scalars(select(AuditEntry)).one()
    assert (row.state, row.attempts) == ("dead", 2)
    assert "SECRETTOKEN" not in (row.last_error or "") and "SECRETTOKEN" not in json.dumps(note.data)


def test_a_lost_lease_cannot_mark_sent_and_the_new_holder_sends_once(engine: Engine) -> None:
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        with engine.begin() as conn:
            notify.enqueue(conn, key="lease", channel="slack", url=f"{srv.url}/slack", body={"text": "x"})
        # a dispatcher claims the message and dies before sending; its lease runs out
        (stale,) = notify.claim(engine, "crashed", lease_seconds=0.2)
        asyncio.run(asyncio.sleep(0.3))
        dispatcher = _dispatcher(engine, lease_seconds=30.0)
        assert asyncio.run(dispatcher.run_until_idle(timeout=10)) == 1
        assert not notify.mark_sent(engine, stale, 200)  # the crashed one comes back: too late
        assert notify.mark_failed(engine, stale, "late", permanent=False, max_attempts=5, base=0.01, maximum=0.1) is None
    with Session(engine) as session:
        row = session.scalars(select(OutboxMessage)).one()
    assert (row.state, row.attempts) == ("sent", 2)
    assert sum(len(v) for v in receiver.delivered.values()) == 1


def test_run_forever_delivers_while_running_and_stops_cleanly(engine: Engine) -> None:
    receiver = Receiver(failures=1, status=429)

    async def scenario(base: str) -> None:
        dispatcher = _dispatcher(engine, poll_seconds=5.0)
        dispatcher.start()
        await asyncio.sleep(0.05)
        with engine.begin() as conn:
            notify.enqueue(conn, key="live", channel="teams", url=f"{base}/teams", body={"type": "message"})
        dispatcher.wake()
        async with asyncio.timeout(10):
            while dispatcher.sent < 1:
                await asyncio.sleep(0.02)
        await dispatcher.stop()

    with ServerThread(receiver.app) as srv:
        asyncio.run(scenario(srv.url))
    assert [len(v) for v in receiver.delivered.values()] == [1]
    assert notify.counts(engine) == {"sent": 1}


def test_dispatcher_refuses_a_lease_shorter_than_its_timeout(engine: Engine) -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        notify.OutboxDispatcher(engine, timeout=10, lease_seconds=15)


def test_message_key_is_stable_and_bounded() -> None:
    k = notify.message_key("x" * 1000, "escalated", 0, "https://a")
    assert k == notify.message_key("x" * 1000, "escalated", 0, "https://a") and len(k) <= 400
    assert notify.delivery_id(k) == notify.delivery_id(k)
    assert notify.redact_url("https://user:pw@hooks.slack.com/services/T/B/SECRET") == "https://hooks.slack.com/\u2026"
    body = notify.encode_body({"b": 1, "a": "\u00e9"})
    mac = hmac.new(SECRET.encode(), b"1765000000." + body, hashlib.sha256).hexdigest()
    assert notify.sign(SECRET, body, 1765000000) == f"t=1765000000,v1={mac}"
    header = notify.sign(SECRET, body, 1765000000)
    assert notify.verify_signature(SECRET, body, header, now=1765000100)
    assert not notify.verify_signature(SECRET, body, header, now=1765000000 + 301)  # stale: a replay
    assert not notify.verify_signature(SECRET, body + b" ", header, now=1765000000)
    assert not notify.verify_signature(SECRET, body, f"t=1765000001,v1={mac}", now=1765000000)  # time is signed
    assert httpx.Headers({notify.DELIVERY_HEADER: notify.delivery_id(k)})  # ASCII header value


def test_a_captured_notification_cannot_be_replayed_as_a_github_webhook(database_url: str, engine: Engine) -> None:
    """Even when an operator reuses the webhook secret for a notification channel, its signature is not GitHub's."""
    from github_app.app import create_app
    from tests.helpers import SECRET as WEBHOOK_SECRET
    from tests.helpers import make_settings

    captured: list[tuple[bytes, dict[str, str]]] = []

    async def capture(request: Request) -> Any:
        captured.append((await request.body(), dict(request.headers)))
        return JSONResponse({"ok": True})

    body = {"event": "approved", "action": "requested", "installation": {"id": 1}, "schema": notify.BODY_SCHEMA}
    with ServerThread(Starlette(routes=[Route("/hook", capture, methods=["POST"])])) as receiver:
        with engine.begin() as conn:
            notify.enqueue(conn, key="r", channel="webhook", url=f"{receiver.url}/hook", body=body,
                           secret_env="GONOGO_NOTIFY_REUSED")  # fmt: skip
        asyncio.run(_dispatcher(engine, environ={"GONOGO_NOTIFY_REUSED": WEBHOOK_SECRET},
                                networks="127.0.0.0/8").run_until_idle(timeout=10))
    [(raw, headers)] = captured
    signature = headers[notify.SIGNATURE_HEADER.lower()]
    fields = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
    forgeries = [signature] + ([f"sha256={fields['v1']}"] if "v1" in fields else [])
    with ServerThread(create_app(make_settings(database_url), workers=0, engine=engine)) as app:
        for forged in forgeries:
            response = httpx.post(f"{app.url}/webhooks/github", content=raw, headers={
                "X-GitHub-Event": "deployment_protection_rule", "X-GitHub-Delivery": f"replay-{len(forged)}",
                "X-Hub-Signature-256": forged, "Content-Type": "application/json",
            })  # fmt: skip
            assert response.status_code == 401, response.text


def test_a_message_naming_a_gonogo_credential_is_never_signed_with_it(engine: Engine) -> None:
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        with engine.begin() as conn:  # queued before the policy check existed, or written by hand
            notify.enqueue(conn, key="cred", channel="webhook", url=f"{srv.url}/webhook", body={"event": "approved"},
                           secret_env="GONOGO_WEBHOOK_SECRET")  # fmt: skip
        environ = {"GONOGO_WEBHOOK_SECRET": SECRET}
        asyncio.run(_dispatcher(engine, max_attempts=2, environ=environ).run_until_idle(timeout=10))
    with Session(engine) as session:
        row = session.scalars(select(OutboxMessage)).one()
    assert row.state == "dead" and "GONOGO_NOTIFY_" in (row.last_error or "")
    assert sum(receiver.attempts.values()) == 0 and receiver.bad_signatures == 0


# --- where notifications may go -------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/hook",  # the gonogo server itself
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # a cloud metadata service
    "http://10.0.0.8:8080/admin",  # an internal service
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",  # loopback spelt as IPv6
    "http://localhost:{port}/hook",  # a name that resolves to loopback
])  # fmt: skip
def test_a_policy_cannot_send_notifications_into_private_networks(engine: Engine, url: str) -> None:
    """A repository's policy names the URL: by default gonogo posts only to public addresses, and says why not."""
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        port = srv.url.rsplit(":", 1)[1]
        with engine.begin() as conn:
            notify.enqueue(conn, key="ssrf", channel="webhook", url=url.format(port=port),
                           body={"event": "approved"})  # fmt: skip
        sent = asyncio.run(_dispatcher(engine, environ={}).run_until_idle(timeout=10))
    assert sent == 0 and sum(receiver.attempts.values()) == 0  # nothing reached the receiver
    with Session(engine) as session:
        [row] = session.scalars(select(OutboxMessage)).all()
    assert row.state == "dead" and row.attempts == 1  # refused at once, not retried for hours
    assert "a private, loopback or link-local address" in row.last_error
    assert notify.NETWORKS_VARIABLE in row.last_error
    assert "/hook" not in row.last_error and "meta-data" not in row.last_error and "admin" not in row.last_error


def test_the_operator_can_allow_a_private_network(engine: Engine) -> None:
    receiver = Receiver(failures=0)
    with ServerThread(receiver.app) as srv:
        with engine.begin() as conn:
            notify.enqueue(conn, key="inside", channel="webhook", url=f"{srv.url}/hook", body={"event": "approved"})
        sent = asyncio.run(_dispatcher(engine, environ={notify.NETWORKS_VARIABLE: "10.0.0.0/8, 127.0.0.0/8"})
                           .run_until_idle(timeout=10))
    assert sent == 1 and sum(len(v) for v in receiver.delivered.values()) == 1


def test_a_bad_network_setting_is_refused_with_what_to_write() -> None:
    from github_app.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="not a network; write CIDR ranges"):
        Settings.from_env({notify.NETWORKS_VARIABLE: "10.0.0.0/8,intranet"}, require_github=False)
    ok = Settings.from_env({notify.NETWORKS_VARIABLE: " 10.0.0.0/8 "}, require_github=False)
    assert ok.notification_networks == "10.0.0.0/8"
