"""Webhook intake over real HTTP: signatures, limits, the inbox, duplicates, health."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Delivery
from github_app.routing import Context, Event, Router
from github_app.serving import ServerThread
from github_app.settings import Secret
from tests.helpers import SECRET, make_settings, post_webhook, sign, webhook_headers

CORPUS_HOOKS = Path(__file__).resolve().parent / "fixtures" / "corpus" / "github" / "webhooks"


def corpus_payloads() -> list[tuple[str, Path]]:
    if not CORPUS_HOOKS.is_dir():
        return []
    return [(p.parent.name, p) for p in sorted(CORPUS_HOOKS.glob("*/*.json"))]


class Recorder:
    """A feature whose side effect we can count."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.router = Router()
        for event in {name for name, _ in corpus_payloads()} | {"ping", "installation"}:
            self.router.on(event)(self.handle)

    async def handle(self, ctx: Context, ev: Event) -> None:
        self.seen[ev.delivery_id] += 1


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app_url(database_url: str, recorder: Recorder):
    settings = make_settings(database_url)
    with ServerThread(create_app(settings, router=recorder.router)) as srv:
        yield srv.url


def stored(database_url: str) -> list[Delivery]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(Delivery).order_by(Delivery.id)).all())
    finally:
        engine.dispose()


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_every_corpus_payload_is_accepted_and_tampering_is_refused(app_url: str, database_url: str, recorder: Recorder):
    payloads = corpus_payloads()
    assert len(payloads) > 20
    accepted = []
    for event, path in payloads:
        body = path.read_bytes()
        good = webhook_headers(event, body)
        # one byte of the signature changed
        bad_sig = dict(good, **{"X-GitHub-Delivery": good["X-GitHub-Delivery"] + "-sig"})
        last = bad_sig["X-Hub-Signature-256"][-1]
        bad_sig["X-Hub-Signature-256"] = bad_sig["X-Hub-Signature-256"][:-1] + ("0" if last != "0" else "1")
        r = httpx.post(f"{app_url}/webhooks/github", content=body, headers=bad_sig)
        assert r.status_code == 401, (path, r.text)
        # one byte of the body changed
        tampered = bytearray(body)
        tampered[len(tampered) // 2] ^= 0x01
        bad_body = dict(good, **{"X-GitHub-Delivery": good["X-GitHub-Delivery"] + "-body"})
        r = httpx.post(f"{app_url}/webhooks/github", content=bytes(tampered), headers=bad_body)
        assert r.status_code == 401, (path, r.text)
        r = httpx.post(f"{app_url}/webhooks/github", content=body, headers=good)
        assert r.status_code == 202, (path, r.text)
        accepted.append((good["X-GitHub-Delivery"], event, body))
    rows = {r.delivery_id: r for r in stored(database_url)}
    assert sorted(rows) == sorted(d for d, _, _ in accepted)  # nothing stored for refused ones
    for delivery_id, event, body in accepted:
        assert rows[delivery_id].event == event
        assert rows[delivery_id].payload.encode() == body  # stored byte for byte
    wait_for(lambda: sum(recorder.seen.values()) == len(accepted))
    assert set(recorder.seen.values()) == {1}


def test_same_delivery_twice_is_processed_once(app_url: str, database_url: str, recorder: Recorder):
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1}
    first = post_webhook(app_url, "ping", payload, delivery_id="dup-1")
    second = post_webhook(app_url, "ping", payload, delivery_id="dup-1")
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    wait_for(lambda: recorder.seen["dup-1"] >= 1)
    time.sleep(0.5)  # give a second (wrong) processing every chance to happen
    assert recorder.seen["dup-1"] == 1
    assert [r.completed_count for r in stored(database_url)] == [1]


def test_concurrent_duplicates_are_stored_once(app_url: str, database_url: str, recorder: Recorder):
    import concurrent.futures

    body = json.dumps({"zen": "x"}).encode()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: post_webhook(app_url, "ping", body, "race-1").status_code, range(32)))
    assert codes.count(202) == 1 and codes.count(200) == 31
    wait_for(lambda: recorder.seen["race-1"] == 1)
    assert len(stored(database_url)) == 1


def test_events_off_the_allow_list_are_stored_as_ignored(app_url: str, database_url: str, recorder: Recorder):
    r = post_webhook(app_url, "star", {"action": "created"}, delivery_id="star-1")
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    time.sleep(0.3)
    [row] = stored(database_url)
    assert row.state == "ignored" and recorder.seen["star-1"] == 0


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"X-GitHub-Delivery": "d1"}, b'{"a": 1}', "X-GitHub-Event"),
        ({"X-GitHub-Event": "ping"}, b'{"a": 1}', "X-GitHub-Delivery"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d2"}, b'{"a": ', "not valid JSON"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d3"}, b"[1, 2]", "not an object"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d4"}, b"\xff\xfe", "not valid JSON"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d5"}, b'{"zen": "\xff"}', "not UTF-8"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d6"}, b'{"zen": [1, 2,, 3]}', "not valid JSON"),
        ({"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d7"}, b'{"zen": 1} trailing', "not valid JSON"),
    ],
)
def test_malformed_requests_get_400_with_a_reason(app_url: str, database_url: str, headers, body, reason):
    r = httpx.post(
        f"{app_url}/webhooks/github", content=body, headers={**headers, "X-Hub-Signature-256": sign(body)}
    )
    assert r.status_code == 400
    assert reason in r.json()["error"]
    assert "\n" not in r.json()["error"]
    assert stored(database_url) == []


def test_missing_signature_is_401_and_says_what_to_check(app_url: str, database_url: str):
    r = httpx.post(
        f"{app_url}/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "x"}
    )
    assert r.status_code == 401
    assert "GONOGO_WEBHOOK_SECRET" in r.json()["error"]
    assert stored(database_url) == []
    metrics = httpx.get(f"{app_url}/metrics").json()
    assert metrics["rejected"] == {"bad_signature": 1}  # the refusal is recorded


def test_oversized_body_is_413_without_reading_it_whole(database_url: str, recorder: Recorder):
    settings = make_settings(database_url, max_body_bytes=64 * 1024)
    with ServerThread(create_app(settings, router=recorder.router)) as srv:
        big = b"{" + b" " * (200 * 1024) + b"}"
        declared = httpx.post(f"{srv.url}/webhooks/github", content=big, headers=webhook_headers("ping", big))
        assert declared.status_code == 413

        def chunks():  # no Content-Length: the server must stop counting at the cap
            for _ in range(400):
                yield b" " * 1024

        streamed = httpx.post(
            f"{srv.url}/webhooks/github", content=chunks(), headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "s"}
        )
        assert streamed.status_code == 413
    assert stored(database_url) == []


def test_default_limit_is_25_mib(database_url: str):
    assert make_settings(database_url).max_body_bytes == 25 * 1024 * 1024


def test_health_and_readiness(app_url: str, database_url: str):
    assert httpx.get(f"{app_url}/healthz").text == "ok"
    ready = httpx.get(f"{app_url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    engine = db.make_engine(database_url)
    try:
        db.downgrade(engine, "base")  # migrations no longer current
        not_ready = httpx.get(f"{app_url}/readyz")
        assert not_ready.status_code == 503 and "gonogo db upgrade" in not_ready.json()["reason"]
        db.upgrade(engine)
    finally:
        engine.dispose()


def test_signature_secret_is_not_logged(app_url: str, caplog: pytest.LogCaptureFixture):
    post_webhook(app_url, "ping", {"zen": "z"}, secret="wrong")
    post_webhook(app_url, "ping", {"zen": "z"})
    assert SECRET not in caplog.text


def test_odd_field_types_are_stored_without_the_fields_the_intake_reads(app_url: str, database_url: str):
    body = b'{"action": 5, "installation": {"id": true}, "zen": "z"}'
    r = httpx.post(f"{app_url}/webhooks/github", content=body, headers=webhook_headers("ping", body, "odd-1"))
    assert r.status_code == 202
    [row] = stored(database_url)
    assert (row.action, row.installation_id, row.payload) == (None, None, body.decode())


def test_out_of_range_fields_do_not_spoil_a_batch(app_url: str, database_url: str):
    """An action wider than its column or an installation id beyond 64 bits would fail the insert, and with
    it every delivery committed in the same batch; they are stored without those fields instead."""
    bodies = {
        "wide-action": b'{"action": "' + b"a" * 65 + b'", "zen": "z"}',
        "huge-installation": b'{"installation": {"id": 18446744073709551616}, "zen": "z"}',
        "negative-installation": b'{"installation": {"id": -1}, "zen": "z"}',
        "fine": b'{"action": "created", "installation": {"id": 42}}',
    }
    for delivery_id, body in bodies.items():
        r = httpx.post(f"{app_url}/webhooks/github", content=body, headers=webhook_headers("ping", body, delivery_id))
        assert r.status_code == 202, r.text
    rows = {row.delivery_id: (row.action, row.installation_id) for row in stored(database_url)}
    assert rows == {"wide-action": (None, None), "huge-installation": (None, None),
                    "negative-installation": (None, None), "fine": ("created", 42)}  # fmt: skip


def test_other_methods_on_the_webhook_path_are_refused(app_url: str, database_url: str):
    assert httpx.get(f"{app_url}/webhooks/github").status_code == 405
    assert stored(database_url) == []


def test_an_unwritable_inbox_answers_503_and_recovers_without_losing_anything(app_url: str, database_url: str):
    assert post_webhook(app_url, "ping", {"zen": "a"}, delivery_id="before").status_code == 202
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:  # the inbox table disappears: every write fails
            conn.exec_driver_sql("ALTER TABLE deliveries RENAME TO deliveries_away")
        refused = post_webhook(app_url, "ping", {"zen": "b"}, delivery_id="during")
        assert refused.status_code == 503 and "not stored" in refused.json()["error"]
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE deliveries_away RENAME TO deliveries")
    finally:
        engine.dispose()
    assert post_webhook(app_url, "ping", {"zen": "b"}, delivery_id="during").status_code == 202  # GitHub redelivers
    assert [row.delivery_id for row in stored(database_url)] == ["before", "during"]


def test_the_previous_secret_is_accepted_while_rotating_and_counted(database_url: str, recorder: Recorder):
    settings = make_settings(database_url, webhook_secret_previous=Secret("the-old-secret"))
    with ServerThread(create_app(settings, router=recorder.router, workers=0)) as srv:
        assert post_webhook(srv.url, "ping", {"zen": "new"}, delivery_id="new").status_code == 202
        assert post_webhook(srv.url, "ping", {"zen": "old"}, delivery_id="old", secret="the-old-secret").status_code == 202
        assert post_webhook(srv.url, "ping", {"zen": "x"}, delivery_id="x", secret="neither").status_code == 401
        metrics = httpx.get(f"{srv.url}/metrics").json()
    assert metrics["previous_secret"] == 1 and metrics["rejected"] == {"bad_signature": 1}
    assert {row.delivery_id for row in stored(database_url)} == {"new", "old"}


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_signed_json_nested_too_deeply_is_400_not_500(app_url: str, database_url: str, depth: int):
    body = ('{"action": "created", "a": ' + "[" * depth + "]" * depth + "}").encode()
    response = post_webhook(app_url, "ping", body, delivery_id=f"deep-{depth}")
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
    assert stored(database_url) == []
    assert httpx.get(f"{app_url}/metrics").json()["rejected"] == {"too_deep": 1}
    # the app is still serving, and a sane body still gets in
    assert post_webhook(app_url, "ping", {"zen": "ok"}, delivery_id="after").status_code == 202


def test_a_body_trickled_slowly_is_cut_off_with_408(database_url: str, recorder: Recorder):
    import socket

    settings = make_settings(database_url, body_timeout_seconds=0.5)
    with ServerThread(create_app(settings, router=recorder.router)) as srv:
        body = json.dumps({"zen": "slow"}).encode()
        head = (f"POST /webhooks/github HTTP/1.1\r\nHost: {srv.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: slow\r\n"
                f"X-Hub-Signature-256: {sign(body)}\r\n\r\n").encode()  # fmt: skip
        started = time.monotonic()
        with socket.create_connection((srv.host, srv.port), timeout=10) as conn:
            conn.sendall(head)
            answer = b""
            for byte in body:  # one byte every 100 ms: the whole body would take over a second
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the server hung up on us: that is the point
                    break
                conn.settimeout(0.1)
                try:
                    answer += conn.recv(4096)
                except TimeoutError:
                    continue
                if answer:
                    break
            conn.settimeout(5)
            while b"GONOGO_BODY_TIMEOUT_SECONDS" not in answer:  # the whole refusal, then the server closes
                try:
                    more = conn.recv(4096)
                except OSError:
                    break
                if not more:
                    break
                answer += more
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 0.5 s" in answer
        assert elapsed < len(body) * 0.1  # cut off before the body was complete
        assert httpx.get(f"{srv.url}/metrics").json()["rejected"] == {"slow_body": 1}
    assert stored(database_url) == []
    assert make_settings(database_url).body_timeout_seconds == 10.0


def test_a_stored_payload_too_deep_to_parse_fails_for_good_not_for_retry():
    from github_app.routing import PermanentError

    raw = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(PermanentError, match="nested too deeply"):
        Event.from_delivery("ping", None, "d", None, raw)
