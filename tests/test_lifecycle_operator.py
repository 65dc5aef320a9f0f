"""The lifecycle under an operator's conditions: tokens GitHub stops taking, skewed clocks, leaky error messages.

Every test drives the real app over HTTP with signed webhooks against the GitHub sandbox.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
from sqlalchemy import text, update

from github_app.app import create_app
from github_app.db.models import Deployment
from github_app.features.escalation import sweep
from github_app.features.gate import recover_stuck
from github_app.routing import Context
from github_app.sandbox.app_hooks import configure_hook, deliver
from github_app.sandbox.webhooks import deployment_protection_rule_payload, installation_payload
from github_app.serving import ServerThread
from tests.helpers import (
    SECRET,
    audit_entries,
    deployment_row,
    execute,
    make_settings,
    post_webhook,
    webhook_headers,
)
from tests.scenarios import INSTALLATION, LABEL, REPO, release_state
from tests.test_rate_limits import CODE_SCANNING, OPEN, parked, seconds_until
from tests.world import World, running_world

STAGING = "staging-release"


def test_a_cached_token_github_no_longer_takes_is_replaced_and_the_deployment_answered(database_url):
    # GitHub refuses an installation token once it expires (an hour, here two minutes) or is revoked, and briefly
    # after it is issued (replication lag, octokit/auth-app.js#65); a clock a little slow keeps it cached past that
    state = release_state()
    state.token_ttl = 120
    _, first = state.deployment(LABEL)
    second = state.add_deployment(REPO, first.sha, "staging", creator="dora", ref="main")
    state.named_deployments[STAGING] = (REPO, second.id)
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "approved"  # the token is cached now, for about a minute more
        state.advance(120)  # GitHub's clock: the token expired
        world.request_gate(STAGING)
        gate = world.wait(lambda: world.gate(STAGING).answer, timeout=30, what="an answer on staging")
        assert gate == "approved"
        world.settle()
        assert [d.state for d in world.deliveries()] == ["done", "done"]
        refused = [c for c in state.calls() if c.status == 401]
        assert refused, "the expired token was not used: the test did not reproduce the condition"


def test_a_failed_artifact_download_never_repeats_the_storage_urls_signature(database_url, caplog):
    # GitHub redirects an artifact download to its storage with a pre-signed URL: the signature in its query is
    # a credential for the blob, and the check run, the status reports and the database are read by many
    with running_world(database_url, release_state()) as world:
        world.state.inject("GET", "/_storage/blobs/*", "status", status=503, times=None)
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        world.settle()
        failed = [c for c in world.state.calls("GET", "/_storage/blobs/*") if c.status == 503]
        _, dep = world.state.deployment(LABEL)
        published = [repr(r.output) for r in world.state.check_runs(REPO, head_sha=dep.sha)]
        published += world.gate(LABEL).reports + [r.comment for r in world.state.reviews(REPO)]
        published += [c.body for c in world.state.comments(REPO)]
        stored = [repr(tuple(row)) for table in ("evidence", "decisions", "audit_log", "deliveries")
                  for row in world.query(text(f"SELECT * FROM {table}"))]  # fmt: skip
    assert failed, "no download failed: the test did not reproduce the condition"
    logged = [repr(r.__dict__) for r in caplog.records]
    leaks = [where for where, texts in (("GitHub", published), ("database", stored), ("logs", logged))
             if any("sig=" in str(t) for t in texts)]  # fmt: skip
    assert not leaks, f"the pre-signed URL's signature reached: {', '.join(leaks)}"


def test_a_primary_limit_whose_reset_our_fast_clock_has_passed_parks_for_a_minute_not_a_second(database_url):
    # our clock runs 100 s ahead of GitHub's (app JWTs still pass: GitHub allows a minute of drift on top of the
    # minute githubkit backdates them): GitHub's reset, 30 s ahead on its clock, is 70 s past on ours
    state = release_state()
    state.advance(-100)
    with running_world(database_url, state) as world:
        world.state.inject("GET", CODE_SCANNING, "primary_rate_limit", retry_after=30, times=None, query=OPEN)
        world.request_gate(LABEL)
        row = parked(world)
        time.sleep(3)  # enough for a worker asking every second to show itself
        asked = [c for c in world.state.calls("GET", CODE_SCANNING) if c.query.get("state") == "open"]
        row = world.deliveries()[0]
    assert len(asked) == 1, f"GitHub was asked {len(asked)} times while it said the limit was spent"
    assert seconds_until(row) >= 55  # at least a minute, as GitHub asks when there is nothing better to go by
    assert row.attempts == 0


def test_a_suspended_installation_is_named_as_such_not_as_a_bad_key_and_answered_once_unsuspended(database_url):
    state = release_state()
    state.installations[INSTALLATION].suspended = True  # an owner suspended the app on the account
    with running_world(database_url, state, sweep_seconds=0.5, lease_seconds=1.0) as world:
        world.request_gate(LABEL)
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
        state.installations[INSTALLATION].suspended = False  # and unsuspended it
        gate = world.wait(lambda: world.gate(LABEL).answer, timeout=30, what="the sweeper to answer")
    assert "suspended" in dead.last_error and "nsuspend" in dead.last_error
    assert "GONOGO_PRIVATE_KEY" not in dead.last_error  # the key is fine: blaming it sends the operator astray
    assert gate == "approved"


def test_the_sweeper_leaves_a_deployment_parked_by_a_rate_limit_alone_until_github_said(database_url):
    # a primary limit spent for ten minutes parks the delivery until the reset; the sweeper, which drives deployments
    # nobody drives, must not take it for stuck once a lease has passed and ask GitHub again every round meanwhile
    with running_world(database_url, release_state(), sweep_seconds=0.2, lease_seconds=1.0) as world:
        world.state.inject("GET", CODE_SCANNING, "primary_rate_limit", retry_after=600, times=None, query=OPEN)
        world.request_gate(LABEL)
        row = parked(world)
        time.sleep(4)  # four leases, twenty sweeps
        asked = [c for c in world.state.calls("GET", CODE_SCANNING) if c.query.get("state") == "open"]
        row = world.deliveries()[0]
    assert len(asked) == 1, f"GitHub was asked {len(asked)} times before the reset it named"
    assert seconds_until(row) > 500


def test_a_webhook_set_to_the_form_content_type_is_taken_and_decided(database_url):
    # an app's webhook configured through the API is "form" unless told otherwise: GitHub then sends the JSON as the
    # form field `payload`, signed as sent; refusing it would leave every deployment waiting until someone noticed
    with running_world(database_url, release_state()) as world:
        configure_hook(world.state, world.app_url + "/webhooks/github", SECRET)
        world.state.hook.content_type = "form"
        sent = deliver(world.state, "deployment_protection_rule", deployment_protection_rule_payload(world.state, LABEL))
        assert sent.status_code == 202, sent.response_body
        assert world.wait_decided(LABEL).answer == "approved"
        [stored] = world.deliveries()
    assert stored.payload.startswith("{") and stored.event == "deployment_protection_rule"


def test_a_form_body_without_its_payload_field_is_refused_with_what_to_do_and_json_mislabelled_is_taken(database_url):
    form = "application/x-www-form-urlencoded"
    body = b"zen=Keep+it+logically+awesome."
    mislabelled = b'{"zen": "Keep it logically awesome."}'  # a proxy that rewrote the content type, say
    with running_world(database_url, release_state()) as world:
        refused = httpx.post(f"{world.app_url}/webhooks/github", content=body,
                             headers={**webhook_headers("ping", body), "Content-Type": form})  # fmt: skip
        taken = httpx.post(f"{world.app_url}/webhooks/github", content=mislabelled,
                           headers={**webhook_headers("ping", mislabelled), "Content-Type": form})  # fmt: skip
        stored = [d.payload for d in world.deliveries()]
    assert refused.status_code == 400 and "payload" in refused.json()["error"]
    assert taken.status_code == 202 and stored == [mislabelled.decode()]


T = TypeVar("T")


def _as_worker(world: World, work: Callable[[Context], Awaitable[T]]) -> T:
    """Run ``work`` with a handler context of its own, as a worker process does, and close it after."""
    ctx = world.app_context()

    async def run() -> T:
        try:
            return await work(ctx)
        finally:
            await ctx.services["github"].aclose()

    try:
        return asyncio.run(run())
    finally:
        ctx.engine.dispose()


def _recover(world: World) -> int:
    """One pass of the sweeper's recovery of deployments nobody drives."""
    return _as_worker(world, recover_stuck)


def _sweep(world: World) -> None:
    """One round of the sweeper: escalations, then deployments nobody drives."""

    async def both(ctx: Context) -> None:
        await sweep(ctx)
        await recover_stuck(ctx)

    _as_worker(world, both)


def test_a_deployment_left_unanswered_past_githubs_30_days_is_abandoned_not_evaluated_again(database_url):
    # what a worker that died mid-evaluation 31 days ago leaves when every later drive failed too (a poison
    # deployment): GitHub failed its run after 30 days, so a fresh evaluation and answer now reach nothing, and
    # one that keeps failing would be retried by every sweep for ever
    with running_world(database_url, release_state()) as world:
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "approved"
        world.settle()
        execute(database_url, update(Deployment).values(
            state="evaluating", answer=None, answered_at=None, decision_id=None, lease_owner=None,
            lease_until=datetime.now(UTC) - timedelta(hours=1), created_at=datetime.now(UTC) - timedelta(days=31)))
        world.state.clear_calls()
        _recover(world)
        calls = [(c.method, c.path) for c in world.state.calls()]
        row = deployment_row(database_url)
    assert calls == [], f"GitHub was asked {len(calls)} times for a run it failed days ago"
    assert row.state == "abandoned"
    [entry] = [e for e in audit_entries(database_url, "lifecycle") if e.data.get("state") == "abandoned"]
    assert "30" in entry.data["why"]


def _stalled_upload(url: str, declared: int, sent: int) -> socket.socket:
    """A connection that declares a body of ``declared`` bytes, sends ``sent`` of them and stops (no secret needed)."""
    where = httpx.URL(url)
    sock = socket.create_connection((where.host, where.port))
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: {where.host}\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: ping\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\nContent-Length: {declared}\r\n\r\n")
    sock.sendall(head.encode() + b" " * sent)
    return sock


def test_unsigned_uploads_cannot_make_the_intake_hold_more_than_its_budget(database_url):
    # the signature can only be checked over the whole body, so the intake holds bodies before it knows who sent
    # them: without a bound on what it holds at once, anyone reaching the URL can fill the web process's memory
    mib = 1024 * 1024
    settings = make_settings(database_url, max_body_bytes=mib, intake_buffer_bytes=3 * mib)
    big = {"zen": "x" * (mib // 2)}
    with ServerThread(create_app(settings, workers=0)) as server:
        stalled = [_stalled_upload(server.url, mib, mib - 1024) for _ in range(3)]
        try:
            time.sleep(0.5)  # their bodies have arrived (all but the last kilobyte)
            refused = post_webhook(server.url, "ping", big)
        finally:
            for sock in stalled:
                sock.close()
        time.sleep(0.5)
        taken = post_webhook(server.url, "ping", big)
    assert refused.status_code == 503 and "GONOGO_INTAKE_BUFFER_BYTES" in refused.json()["error"]
    assert taken.status_code == 202  # the budget is given back as requests end


def test_a_check_run_github_would_not_complete_after_the_answer_is_completed_once_github_is_back(database_url):
    # the answer goes first, then the check run is completed with the report; GitHub failing the completion (past
    # the retries) left the check run "in progress" for ever: the developer never saw the report or the verdict
    with running_world(database_url, release_state(failing_tests=3)) as world:
        world.state.inject("PATCH", "/repos/acme/api/check-runs/*", "status", status=502, times=None)
        world.request_gate(LABEL)
        world.wait(lambda: world.gate(LABEL).answer, timeout=30, what="the answer")
        world.wait(lambda: [d for d in world.deliveries() if d.state == "done" or d.last_error], timeout=60,
                   what="the first attempt to end")  # fmt: skip
        world.state.clear_faults()  # GitHub is back
        run = world.wait(lambda: world.check_run(LABEL).status == "completed" and world.check_run(LABEL),
                         timeout=60, what="the check run to be completed")  # fmt: skip
        answers = world.accepted_answers(REPO)
    assert world.gate(LABEL).answer == "rejected" and run.conclusion == "failure"
    assert "test" in run.output.get("summary", "").lower()  # the report, not a placeholder
    assert [a.state for a in answers] == ["rejected"]  # answered once


def test_an_uninstalled_apps_waiting_escalation_is_abandoned_not_polled_for_30_days(database_url):
    # once the app is uninstalled no token can answer for the installation: a waiting escalation (or a stuck
    # deployment) would cost a refused token request every sweep, for each one, until GitHub's 30 days ran out
    with running_world(database_url, release_state(checks_running=True)) as world:
        world.escalate(LABEL)
        uninstalled = installation_payload(world.state, INSTALLATION, "deleted")
        with world.state.lock:  # GitHub forgets the installation and revokes its tokens
            del world.state.installations[INSTALLATION]
            world.state.tokens.clear()
        assert world.send("installation", uninstalled).status_code == 202
        world.settle()
        world.state.clear_calls()
        _sweep(world)
        calls = [(c.method, c.path, c.status) for c in world.state.calls()]
        row = deployment_row(database_url)
    assert calls == [], f"GitHub was asked {len(calls)} times for an installation that is gone"
    assert row.state == "abandoned"
    [entry] = [e for e in audit_entries(database_url, "lifecycle") if e.data.get("state") == "abandoned"]
    assert "uninstalled" in entry.data["why"]


def test_a_check_run_github_created_but_answered_504_for_is_not_created_twice(database_url):
    # GitHub's edge may give up on a slow request that its backend still carries out: creating the check run again
    # left the first one "in progress" beside the one gonogo completed
    with running_world(database_url, release_state()) as world:
        world.state.inject("POST", "/repos/acme/api/check-runs", "late_504", times=1)
        world.request_gate(LABEL)
        assert world.wait_decided(LABEL).answer == "approved"
        world.settle()
        _, dep = world.state.deployment(LABEL)
        runs = [(r.id, r.status) for r in world.state.check_runs(REPO, name="gonogo", head_sha=dep.sha)]
        answers = world.accepted_answers(REPO)
    assert [status for _, status in runs] == ["completed"], runs
    assert [a.state for a in answers] == ["approved"]


def test_an_app_jwt_refused_for_a_skewed_clock_says_to_fix_the_clock_not_the_key(database_url):
    # GitHub refuses an app JWT issued in its future (or expired on its clock): the key is fine, the clock is not
    state = release_state()
    state.advance(-300)  # this machine's clock runs five minutes ahead of GitHub's
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        world.wait(lambda: [d for d in world.deliveries() if d.state == "dead"], what="a dead delivery")
        [dead] = world.deliveries()
    assert "clock" in dead.last_error and "GONOGO_PRIVATE_KEY" not in dead.last_error
