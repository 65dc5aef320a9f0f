"""The inbox's hot write path on the backend under test: new vs duplicate, atomic batches, concurrency."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from github_app import db
from github_app.db.models import Delivery
from github_app.inbox import IncomingDelivery, insert_deliveries


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


def _item(delivery_id: str, *, ignored: bool = False, payload: str | None = '{"zen": "z"}') -> IncomingDelivery:
    return IncomingDelivery(delivery_id, "ping", "created", 42, payload, ignored)  # type: ignore[arg-type]


def _rows(engine) -> dict[str, Delivery]:
    with engine.connect() as conn:
        return {r.delivery_id: r for r in conn.execute(select(Delivery))}


def test_new_ids_are_reported_and_stored_with_the_models_types(engine):
    before = datetime.now(UTC)
    assert insert_deliveries(engine, [_item("b"), _item("a", ignored=True)]) == {"a", "b"}
    rows = _rows(engine)
    assert set(rows) == {"a", "b"}
    assert rows["a"].state == "ignored" and rows["b"].state == "pending"
    assert rows["b"].event == "ping" and rows["b"].action == "created" and rows["b"].installation_id == 42
    assert rows["b"].payload == '{"zen": "z"}' and rows["b"].attempts == 0 and rows["b"].completed_count == 0
    # timestamps come back timezone-aware UTC on both backends, and the claim query can compare them
    assert rows["b"].received_at.tzinfo is not None and rows["b"].received_at >= before.replace(microsecond=0)
    assert rows["b"].next_attempt_at == rows["b"].received_at


def test_duplicates_are_not_new_and_keep_the_first_copy(engine):
    assert insert_deliveries(engine, [_item("x", payload='{"n": 1}')]) == {"x"}
    assert insert_deliveries(engine, [_item("x", payload='{"n": 2}'), _item("y")]) == {"y"}
    assert _rows(engine)["x"].payload == '{"n": 1}'


def test_a_failing_batch_stores_nothing_and_the_pool_stays_usable(engine):
    with pytest.raises(Exception) as caught:
        insert_deliveries(engine, [_item("good"), _item("bad", payload=None)])  # payload is NOT NULL
    assert "null" in str(caught.value).lower()
    assert _rows(engine) == {}
    for _ in range(3):  # every pooled connection was rolled back, not left mid-transaction
        assert insert_deliveries(engine, [_item(f"after-{_}")]) == {f"after-{_}"}


def test_concurrent_overlapping_batches_report_each_id_new_exactly_once(engine):
    ids = [f"d{i:03d}" for i in range(60)]
    start = threading.Barrier(6)

    def writer(k: int) -> set[str]:
        batch = [_item(i) for i in (ids[k * 10 :] + ids[: k * 10])[:40]]  # overlapping windows, rotated
        start.wait()
        return insert_deliveries(engine, batch)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(writer, range(6)))
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(set(claimed))  # nobody was told "new" for the same id twice
    assert set(claimed) == set(_rows(engine))  # and every stored row was reported new to someone


def _payload_compression(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT attcompression FROM pg_attribute "
                "WHERE attrelid = 'deliveries'::regclass AND attname = 'payload'"
            )
        ).scalar_one()


def test_payloads_are_lz4_compressed_on_postgresql(postgres_url: str):
    eng = db.make_engine(postgres_url)
    try:
        assert _payload_compression(eng) == "l"
        db.downgrade(eng, "0002")
        assert _payload_compression(eng) == "p"  # the downgrade goes back to PostgreSQL's default
    finally:
        eng.dispose()


def test_a_database_restart_between_deliveries_costs_no_delivery(postgres_url: str):
    """The server drops every connection of the app (as a restart does); the next delivery is still stored."""
    import uuid

    import httpx

    from github_app.app import create_app
    from github_app.serving import ServerThread
    from tests.helpers import make_settings, post_webhook

    name = f"gonogo-restart-{uuid.uuid4().hex[:8]}"
    app_url = f"{postgres_url}&application_name={name}"
    admin = db.make_engine(postgres_url)
    try:
        with ServerThread(create_app(make_settings(app_url, workers=0))) as srv:
            assert post_webhook(srv.url, "ping", {"zen": "a"}, delivery_id="before").status_code == 202
            with admin.connect() as conn:
                killed = conn.execute(
                    text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).scalar_one()
            assert killed >= 1  # the intake's pooled connection is among them
            after = post_webhook(srv.url, "ping", {"zen": "b"}, delivery_id="after")
            assert after.status_code == 202, after.text
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
        with admin.connect() as conn:
            stored_ids = conn.execute(select(Delivery.delivery_id).order_by(Delivery.id)).scalars().all()
        assert stored_ids == ["before", "after"]
    finally:
        admin.dispose()


def test_a_row_the_database_refuses_fails_alone_not_its_whole_batch(engine, caplog):
    """Group commit puts concurrent deliveries in one transaction; a value the database refuses (here an id
    beyond 64 bits) must fail only its own request, while the rest of the batch is stored."""
    from github_app.inbox import InboxWriter

    good = [_item("good-1"), _item("good-2")]
    bad = IncomingDelivery("bad", "ping", None, 2**70, '{"zen": "z"}', False)

    async def scenario():
        writer = InboxWriter(engine, flushers=1)
        writer.start()  # the flusher runs first and waits; the three below land in its one batch
        try:
            return await asyncio.gather(*(writer.submit(it) for it in (good[0], bad, good[1])),
                                        return_exceptions=True)  # fmt: skip
        finally:
            await writer.stop()

    first, refused, second = asyncio.run(scenario())
    assert first is True and second is True
    assert isinstance(refused, Exception)
    assert set(_rows(engine)) == {"good-1", "good-2"}
    assert "inbox.row_refused" in caplog.text  # they were one batch, split after the refusal


def test_a_database_failure_still_fails_the_whole_batch(engine):
    """Only a refused value is retried row by row; a real outage answers every request with the error."""
    from github_app.inbox import _bad_row

    assert _bad_row(engine, OverflowError("int too large"))
    assert _bad_row(engine, engine.dialect.dbapi.IntegrityError("null value"))
    assert not _bad_row(engine, engine.dialect.dbapi.OperationalError("connection refused"))
    assert not _bad_row(engine, RuntimeError("anything else"))


def test_payloads_are_stored_compressed_on_sqlite_and_read_back_as_text(engine):
    from github_app.inbox import claim

    body = json.dumps({"zen": "Keep it logically awesome \u00e9 \U0001f680", "items": [{"k": i} for i in range(300)]})
    insert_deliveries(engine, [IncomingDelivery("big", "ping", None, None, body, False)])
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT payload FROM deliveries WHERE delivery_id = 'big'")).scalar()
    if engine.dialect.name == "sqlite":
        assert isinstance(raw, bytes) and len(raw) * 4 < len(body.encode())  # zstd: several times smaller
    else:
        assert raw == body  # PostgreSQL compresses the text itself (lz4)
    assert _rows(engine)["big"].payload == body
    [job] = claim(engine, "w", 30)
    assert job.payload == body and json.loads(job.payload)["zen"].endswith("\U0001f680")


def test_payloads_stored_as_plain_text_before_compression_still_read(engine):
    insert_deliveries(engine, [_item("old")])
    with engine.begin() as conn:  # what a database written by an earlier version holds
        conn.execute(text("UPDATE deliveries SET payload = :p WHERE delivery_id = 'old'"), {"p": '{"zen": "plain"}'})
    assert _rows(engine)["old"].payload == '{"zen": "plain"}'
