"""Notification URLs carry secrets in their path: nothing gonogo stores or reports keeps more than scheme and host."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from github_app import db
from github_app.db.models import AuditEntry, DecisionRecord, OutboxMessage, Review
from github_app.serving import ServerThread
from rules.policy import PolicyError, load_policy_text
from tests.scenarios import LABEL, release_state
from tests.world import running_world

SECRETS = ("SLACKPATHSECRET", "TEAMSPATHSECRET", "QUERYSIGSECRET", "ECHOEDBODYSECRET")


class Receiver:
    """Slack answers 200; Teams refuses with a body that echoes the request URL and a secret of its own."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Any:
        await request.body()
        with self.lock:
            self.seen.append(str(request.url))
        if "slack" in request.url.path:
            return JSONResponse({"ok": True})
        return PlainTextResponse(f"bad card for {request.url}: ECHOEDBODYSECRET", 400)


def test_no_notification_url_secret_is_stored_in_the_audit_log_or_the_outbox(database_url):
    receiver = Receiver()
    with ServerThread(receiver.app) as hooks:
        policy = f"""
environments:
  production:
    reviewers: {{teams: [acme/sre]}}
    notifications:
      - {{type: slack, url: "{hooks.url}/slack/services/T0/B0/SLACKPATHSECRET"}}
      - {{type: teams, url: "{hooks.url}/teams/workflows/TEAMSPATHSECRET?sig=QUERYSIGSECRET"}}
"""
        state = release_state(checks_running=True, policy=policy, team_members=("rita",))
        with running_world(database_url, state, notification_networks="127.0.0.0/8") as world:  # the receiver's
            world.request_gate(LABEL)
            world.wait_decided(LABEL)
            engine = db.make_engine(database_url)

            def finished() -> list[Any]:
                with engine.connect() as conn:
                    rows = conn.execute(select(OutboxMessage)).all()
                return rows if len(rows) == 2 and all(r.state in ("sent", "dead") for r in rows) else []

            outbox = world.wait(finished, what="both notifications to finish")
            with engine.connect() as conn:
                entries = conn.execute(select(AuditEntry.kind, AuditEntry.data)).all()
                decisions = conn.execute(select(DecisionRecord.data)).scalars().all()
                reviews = conn.execute(select(Review)).all()
            engine.dispose()
    # the messages did go to the full URLs ...
    assert any("SLACKPATHSECRET" in url for url in receiver.seen) and any("QUERYSIGSECRET" in url for url in receiver.seen)
    assert sorted(r.state for r in outbox) == ["dead", "sent"]
    # ... but nothing kept holds their secret parts, nor what the receiver answered
    decision_entries = [data for kind, data in entries if kind == "decision"]
    assert decision_entries and decision_entries[0]["effective_policy"]["notifications"][0]["url"].endswith("/\u2026")
    stored = json.dumps([[kind, data] for kind, data in entries]) + json.dumps(decisions)
    stored += json.dumps([[r.url, r.last_error, r.body] for r in outbox]) + repr(reviews)
    assert [s for s in SECRETS if s in stored] == []
    dead = next(r for r in outbox if r.state == "dead")
    assert dead.last_error.startswith("HTTP 400") and dead.url.startswith("http://127.0.0.1:")


def test_a_policy_error_about_a_url_does_not_repeat_the_url() -> None:
    text = "environments:\n  production:\n    notifications:\n      - {type: slack, url: 'ftp://hooks.example/T0/SLACKPATHSECRET'}\n"
    with pytest.raises(PolicyError) as err:
        load_policy_text(text)
    assert "SLACKPATHSECRET" not in str(err.value) and "https://" in str(err.value)
