"""Alertmanager's webhook over real HTTP: alerts after a release become incident outcomes of that release."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from github_app import db
from github_app.app import create_app
from github_app.db.models import Delivery, Deployment, HistoryRow, Outcome
from github_app.features.alerts import parse_alert_time, read_alert
from github_app.features.outcomes import record_outcome
from github_app.serving import ServerThread
from github_app.settings import Secret, Settings, SettingsError
from tests.helpers import make_settings, post_webhook

TOKEN = "am-token-0123456789abcdef"
REPO, ENV = "octo/shop", "production"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)  # the release went live then


@pytest.fixture
def engine(database_url: str):
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def app_url(database_url: str, engine):
    settings = make_settings(database_url, alertmanager_token=Secret(TOKEN), alert_window_hours=24.0)
    with ServerThread(create_app(settings, workers=1, engine=engine)) as srv:
        yield srv.url


def _released(engine, sha: str, at: datetime, status_id: int) -> None:
    """What the gate and a deployment status leave behind: an approved deployment, its history row, then a success
    outcome (only a release gonogo let through can be the one live when an alert starts)."""
    with engine.begin() as conn:
        conn.execute(insert(Deployment).values(key=f"{REPO}/{status_id}/{ENV}/1", repository=REPO, environment=ENV,
                                               sha=sha, run_id=status_id, created_at=at - timedelta(minutes=5),
                                               answer="approved", answered_at=at - timedelta(minutes=4)))  # fmt: skip
        conn.execute(insert(HistoryRow).values(deployment_id=f"{REPO}/{status_id}/{ENV}/1", repository=REPO,
                                               environment=ENV, sha=sha, created_at=at - timedelta(minutes=5),
                                               features={}))  # fmt: skip
    assert record_outcome(engine, repository=REPO, environment=ENV, sha=sha, outcome="success",
                          source="deployment_status", source_key=f"deployment_status:{status_id}", observed_at=at)  # fmt: skip


def _alert(started: datetime, *, fingerprint: str = "f1", status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "repository": REPO, "environment": ENV,
                   **labels},
        "annotations": {"summary": "5xx above 5% for 10 minutes"},
        "startsAt": started.strftime("%Y-%m-%dT%H:%M:%S.123456789Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": fingerprint,
    }  # fmt: skip


def _notification(*alerts: dict[str, Any], group: str = "g") -> dict[str, Any]:
    return {"version": "4", "groupKey": group, "truncatedAlerts": 0, "status": alerts[0]["status"] if alerts else "firing",
            "receiver": "gonogo", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}  # fmt: skip


def _post(url: str, body: dict[str, Any] | bytes, token: str | None = TOKEN) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/webhooks/alertmanager", content=content, headers=headers, timeout=30)


def _settle(engine, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            states = set(conn.execute(select(Delivery.state)).scalars())
        if states <= {"done", "ignored", "dead"}:
            assert "dead" not in states
            return
        time.sleep(0.05)
    raise AssertionError(f"deliveries still waiting: {states}")


def _incidents(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Outcome.source_key, Outcome.sha).where(Outcome.outcome == "incident")).all())


def _history(engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(HistoryRow.sha, HistoryRow.outcome)).all())


def test_an_alert_after_a_release_labels_that_release_an_incident(app_url, engine):
    _released(engine, "a" * 40, T0, 1)
    _released(engine, "b" * 40, T0 + timedelta(hours=3), 2)
    response = _post(app_url, _notification(_alert(T0 + timedelta(hours=4))))
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    _settle(engine)
    # blamed on the release live when the alert started: b, not a
    assert list(_incidents(engine).values()) == ["b" * 40]
    assert _history(engine) == {"a" * 40: "success", "b" * 40: "incident"}
    with engine.connect() as conn:
        detail = conn.execute(select(Outcome.detail).where(Outcome.outcome == "incident")).scalar_one()
        known = conn.execute(select(HistoryRow.outcome_at).where(HistoryRow.sha == "b" * 40)).scalar_one()
    # the incident became known when the alert started, not when the release was deployed
    known = known if known.tzinfo is not None else known.replace(tzinfo=UTC)
    assert abs(known - (T0 + timedelta(hours=4))) < timedelta(seconds=1)
    assert detail["alertname"] == "HighErrorRate" and detail["severity"] == "critical"
    assert detail["summary"] == "5xx above 5% for 10 minutes"


def test_repeats_count_once_and_an_identical_resend_is_a_duplicate(app_url, engine):
    _released(engine, "c" * 40, T0, 3)
    body = _notification(_alert(T0 + timedelta(hours=1)))
    assert _post(app_url, body).status_code == 202
    assert _post(app_url, body).status_code == 200  # the same notification again: stored once
    # Alertmanager's repeat_interval: the same alert in a new notification, now resolved
    assert _post(app_url, _notification(_alert(T0 + timedelta(hours=1), status="resolved"), group="g2")).status_code == 202
    _settle(engine)
    assert len(_incidents(engine)) == 1


def test_alerts_that_are_not_about_a_release_are_left_alone(app_url, engine):
    _released(engine, "d" * 40, T0, 4)
    too_late = _alert(T0 + timedelta(hours=30), fingerprint="late")  # outside the 24 h window
    info = _alert(T0 + timedelta(hours=1), fingerprint="info", severity="info")
    unlabelled = _alert(T0 + timedelta(hours=1), fingerprint="bare")
    del unlabelled["labels"]["repository"]
    other_env = _alert(T0 + timedelta(hours=1), fingerprint="staging", environment="staging")
    too_long = _alert(T0 + timedelta(hours=1), fingerprint="long", environment="e" * 300)  # wider than the column
    assert _post(app_url, _notification(too_late, info, unlabelled, other_env, too_long, "junk")).status_code == 202  # type: ignore[arg-type]
    _settle(engine)
    assert _incidents(engine) == {}
    assert _history(engine) == {"d" * 40: "success"}


def test_a_sha_label_names_the_release_outright(app_url, engine):
    _released(engine, "e" * 40, T0, 5)
    _released(engine, "f" * 40, T0 + timedelta(hours=1), 6)
    assert _post(app_url, _notification(_alert(T0 + timedelta(hours=2), sha="e" * 40))).status_code == 202
    _settle(engine)
    assert list(_incidents(engine).values()) == ["e" * 40]
    assert _history(engine)["e" * 40] == "incident"


def test_without_a_deployment_status_gonogos_own_approval_marks_the_release(app_url, engine):
    with engine.begin() as conn:
        conn.execute(insert(Deployment).values(key=f"{REPO}/9/{ENV}/1", repository=REPO, environment=ENV, sha="9" * 40,
                                               run_id=9, created_at=T0, answer="approved", answered_at=T0))  # fmt: skip
    assert _post(app_url, _notification(_alert(T0 + timedelta(hours=1)))).status_code == 202
    _settle(engine)
    assert list(_incidents(engine).values()) == ["9" * 40]


def test_refusals_are_clear_and_store_nothing(app_url, engine):
    good = _notification(_alert(T0))
    assert _post(app_url, good, token=None).status_code == 401
    wrong = _post(app_url, good, token="not-the-token-at-all")
    assert wrong.status_code == 401 and "GONOGO_ALERTMANAGER_TOKEN" in wrong.json()["error"]
    assert _post(app_url, b"{not json").status_code == 400
    not_am = _post(app_url, {"hello": "world"})
    assert not_am.status_code == 400 and "alerts" in not_am.json()["error"]
    # a GitHub delivery cannot pose as an Alertmanager notification: it is stored as ignored
    assert post_webhook(app_url, "alertmanager", good).json()["status"] == "ignored"
    with engine.connect() as conn:
        assert set(conn.execute(select(Delivery.state)).scalars()) == {"ignored"}
    rejected = httpx.get(f"{app_url}/metrics").json()["rejected"]
    assert rejected == {"alertmanager_bad_token": 2, "alertmanager_bad_json": 1, "alertmanager_not_alertmanager": 1}


def test_the_intake_is_off_without_a_token(database_url, engine):
    with ServerThread(create_app(make_settings(database_url), workers=0, engine=engine)) as srv:
        response = _post(srv.url, _notification(_alert(T0)))
    assert response.status_code == 404 and "GONOGO_ALERTMANAGER_TOKEN" in response.json()["error"]


def test_token_setting_and_alert_parsing():
    env = {"GONOGO_WEBHOOK_SECRET": "s", "GONOGO_APP_ID": "1"}
    assert Settings.from_env(env, require_github=False).alertmanager_token is None
    assert Settings.from_env({**env, "GONOGO_ALERTMANAGER_TOKEN": TOKEN}, require_github=False).alertmanager_token == Secret(TOKEN)
    with pytest.raises(SettingsError, match="too short"):
        Settings.from_env({**env, "GONOGO_ALERTMANAGER_TOKEN": "short"}, require_github=False)
    assert parse_alert_time("2026-11-25T10:00:00.123456789Z") == datetime(2026, 11, 25, 10, 0, 0, 123456, UTC)
    assert parse_alert_time("0001-01-01T00:00:00Z") is None and parse_alert_time("yesterday") is None
    no_fingerprint = _alert(T0)
    del no_fingerprint["fingerprint"]
    first, again = read_alert(no_fingerprint), read_alert(json.loads(json.dumps(no_fingerprint)))
    assert not isinstance(first, str) and not isinstance(again, str) and first.key == again.key
    assert read_alert(_alert(T0, repository="no-slash")) == "no repository (owner/name) and environment labels"
    assert read_alert(_alert(T0, environment="e" * 201)) == "repository, environment or sha label too long"
    assert read_alert(_alert(T0, sha="f" * 65)) == "repository, environment or sha label too long"


def test_a_refused_sha_label_is_named_in_the_answer_audited_and_counted(app_url, engine):
    """A malformed, unknown or ambiguous ``sha`` label refuses that alert only: the answer names a malformed one at
    once, the worker records every refusal once in the audit log, /metrics counts them, and the good alert in the
    same notification is still recorded."""
    from github_app import audit
    from github_app.db.models import AuditEntry

    _released(engine, "ab12345" + "0" * 33, T0, 11)
    _released(engine, "ab12345" + "1" * 33, T0 + timedelta(minutes=1), 12)  # two commits start with ab12345
    at = T0 + timedelta(hours=1)
    malformed = _alert(at, fingerprint="bad", sha="release-42")
    unknown = _alert(at, fingerprint="unknown", sha="fedcba9")
    ambiguous = _alert(at, fingerprint="ambiguous", sha="AB12345")
    good = _alert(at, fingerprint="good", sha="ab12345" + "1" * 33)
    response = _post(app_url, _notification(malformed, unknown, ambiguous, good))
    assert response.status_code == 202
    refused = response.json()["refused"]
    assert [(r["index"], r["fingerprint"], r["sha_label"]) for r in refused] == [(0, "bad", "release-42")]
    assert "not a commit id" in refused[0]["reason"] and refused[0]["alertname"] == "HighErrorRate"
    # Alertmanager repeats the firing alerts in the next notification: each refusal is recorded once
    assert _post(app_url, _notification(malformed, unknown, ambiguous, group="again")).status_code == 202
    _settle(engine)
    assert list(_incidents(engine).values()) == ["ab12345" + "1" * 33]  # nothing accepted is lost
    with engine.connect() as conn:
        entries = conn.execute(select(AuditEntry.repository, AuditEntry.actor, AuditEntry.data)
                               .where(AuditEntry.kind == "alert_refused").order_by(AuditEntry.seq)).all()  # fmt: skip
    assert [(e.repository, e.actor, e.data["fingerprint"], e.data["sha_label"]) for e in entries] == [
        (REPO, "alertmanager", "bad", "release-42"), (REPO, "alertmanager", "unknown", "fedcba9"),
        (REPO, "alertmanager", "ambiguous", "AB12345"),
    ]  # fmt: skip
    reasons = [e.data["reason"] for e in entries]
    assert "not a commit id" in reasons[0] and "matches no release" in reasons[1] and "matches 2 releases" in reasons[2]
    assert all(e.data["environment"] == ENV and e.data["alertname"] == "HighErrorRate" for e in entries)
    assert audit.verify(engine).ok
    assert httpx.get(f"{app_url}/metrics").json()["alerts_refused_last_day"] == 3
    text = httpx.get(f"{app_url}/metrics", params={"format": "prometheus"}).text
    assert "gonogo_alerts_refused_last_day 3" in text
