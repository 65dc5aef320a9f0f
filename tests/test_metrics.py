"""GET /metrics over HTTP: JSON for people, Prometheus' text format for scrapers."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from github_app import db, metrics, notify
from github_app.app import create_app
from github_app.db.models import Delivery
from github_app.inbox import IncomingDelivery, insert_deliveries
from github_app.jobs import utcnow
from github_app.serving import ServerThread
from tests.helpers import make_settings, post_webhook

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[0-9.e+-]+)$')


def _parse(text: str) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """Prometheus text format 0.0.4 -> ({family: type}, {(name, labels): value}); fails on any other line."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            samples[(m["name"], m["labels"] or "")] = float(m["value"])
    return types, samples


@pytest.fixture
def served(database_url: str):
    engine = db.make_engine(database_url)
    # no workers: what arrives stays pending, so the figures are what this test put there
    with ServerThread(create_app(make_settings(database_url), workers=0, engine=engine)) as srv:
        yield srv.url, engine
    engine.dispose()


def test_metrics_as_json_and_as_prometheus_text(served):
    url, engine = served
    assert post_webhook(url, "ping", {"zen": "a"}, delivery_id="a").status_code == 202
    assert post_webhook(url, "ping", {"zen": "b"}, delivery_id="b").status_code == 202
    assert post_webhook(url, "ping", {"zen": "c"}, delivery_id="c", secret="wrong").status_code == 401
    with engine.begin() as conn:  # "a" has been due for an hour: a stuck queue shows
        conn.execute(update(Delivery).where(Delivery.delivery_id == "a")
                     .values(next_attempt_at=utcnow() - timedelta(hours=1)))  # fmt: skip
        notify.enqueue(conn, key="k", channel="slack", url="https://hooks.example/x", body={"text": "t"})

    as_json = httpx.get(f"{url}/metrics").json()
    assert as_json["deliveries"] == {"pending": 2, "processing": 0, "done": 0, "dead": 0, "ignored": 0}
    assert as_json["rejected"] == {"bad_signature": 1}
    assert as_json["notifications"] == {"pending": 1, "sending": 0, "sent": 0, "dead": 0}
    assert 3590 < as_json["oldest_due_delivery_seconds"] < 3700
    assert as_json["processed"] == 0 and as_json["previous_secret"] == 0
    assert as_json["audit_head"] is None  # nothing audited yet

    scraped = httpx.get(f"{url}/metrics", headers={"Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"})
    assert scraped.headers["content-type"] == metrics.PROMETHEUS_CONTENT_TYPE
    types, samples = _parse(scraped.text)
    assert types == {
        "gonogo_deliveries": "gauge", "gonogo_oldest_due_delivery_seconds": "gauge", "gonogo_notifications": "gauge",
        "gonogo_webhooks_rejected_total": "counter", "gonogo_deliveries_processed_total": "counter",
        "gonogo_webhooks_previous_secret_total": "counter", "gonogo_audit_head_seq": "gauge",
        "gonogo_redelivery_total": "counter", "gonogo_alerts_refused_last_day": "gauge",
    }  # fmt: skip
    assert samples[("gonogo_alerts_refused_last_day", "")] == 0 and as_json["alerts_refused_last_day"] == 0
    assert samples[("gonogo_deliveries", 'state="pending"')] == 2
    assert samples[("gonogo_deliveries", 'state="dead"')] == 0
    assert samples[("gonogo_webhooks_rejected_total", 'reason="bad_signature"')] == 1
    assert samples[("gonogo_notifications", 'state="pending"')] == 1
    assert 3590 < samples[("gonogo_oldest_due_delivery_seconds", "")] < 3700
    assert _parse(httpx.get(f"{url}/metrics?format=prometheus").text)[1] == samples | {
        ("gonogo_oldest_due_delivery_seconds", ""): pytest.approx(samples[("gonogo_oldest_due_delivery_seconds", "")], abs=5)
    }


def test_metrics_show_the_audit_head_that_verify_prints(served):
    from click.testing import CliRunner
    from sqlalchemy.orm import Session

    from github_app import audit
    from github_app.cli import cli

    url, engine = served
    for n in range(3):
        with Session(engine) as session, session.begin():
            audit.append(session, "reminder", repository="acme/api", data={"n": n})
    verified = audit.verify(engine)
    head = httpx.get(f"{url}/metrics").json()["audit_head"]
    assert (head["seq"], head["hash"]) == (verified.head_seq, verified.head_hash) == (3, audit.head(engine)[1])
    _, samples = _parse(httpx.get(f"{url}/metrics?format=prometheus").text)
    assert samples[("gonogo_audit_head_seq", "")] == 3
    printed = CliRunner().invoke(cli, ["audit", "verify", "--database-url", str(engine.url.render_as_string(False))])
    assert printed.exit_code == 0, printed.output
    assert f"--expect-head 3:{head['hash']}" in printed.output


def test_an_empty_inbox_reports_zeros(served):
    url, _ = served
    _, samples = _parse(httpx.get(f"{url}/metrics", params={"format": "prometheus"}).text)
    assert samples[("gonogo_oldest_due_delivery_seconds", "")] == 0
    assert {v for (name, _), v in samples.items() if name == "gonogo_deliveries"} == {0}


def test_a_retry_waiting_out_its_backoff_is_not_counted_as_waiting(database_url):
    engine = db.make_engine(database_url)
    insert_deliveries(engine, [IncomingDelivery("later", "ping", None, None, "{}", False)])
    with engine.begin() as conn:
        conn.execute(update(Delivery).values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    assert metrics.take(engine, {}, 0).oldest_due_seconds == 0
    engine.dispose()


def test_label_values_are_escaped():
    snap = metrics.Snapshot({}, 0.0, {}, rejected={'odd "reason"\\\n': 2})
    assert 'gonogo_webhooks_rejected_total{reason="odd \\"reason\\"\\\\\\n"} 2' in metrics.as_prometheus(snap)
