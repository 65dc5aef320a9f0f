"""Outcomes reach the release they are about, and nothing else: over HTTP, with signed webhooks, against the sandbox.

- A deployment status names its GitHub deployment: when gonogo gated that deployment, its history row is the one
  labelled, even when the same commit was gated again later (a re-deploy, a second attempt).
- An alert's ``sha`` label names the release, but the label is bounded like any alert: the release must have gone
  live in that environment within the attribution window before the alert started, and a ``startsAt`` in the
  future counts from when the notification was received.
- A short or uppercase ``sha`` label resolves to the one release of gonogo's it can mean, or is refused with a
  logged reason; it never stores an incident under a commit id that labels no row.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select

from github_app import db
from github_app.db.models import Deployment, HistoryRow, Outcome
from github_app.sandbox.state import SandboxState
from github_app.settings import Secret
from tests.scenarios import LABEL, REPO, decide, release_state
from tests.test_learned_thresholds import in_working_hours
from tests.test_outcome_attacks import _status
from tests.world import World, running_world

TOKEN = "am-token-0123456789abcdef"


def _alert(started: datetime, fingerprint: str, **labels: str) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": "HighErrorRate", "severity": "critical", "repository": REPO,
                                           "environment": "production", **labels},
            "annotations": {}, "startsAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint}  # fmt: skip


def _notify(world: World, *alerts: dict[str, Any]) -> None:
    body = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "gonogo", "alerts": list(alerts)}
    response = httpx.post(f"{world.app_url}/webhooks/alertmanager", content=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                          timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _approved(database_url: str, releases: list[tuple[str, datetime]], first: int = 7000) -> None:
    """Earlier releases gonogo let through, stored as the gate stores them (deployment row and history row)."""
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        for i, (sha, when) in enumerate(releases, start=first):
            key = f"{REPO}#{i}/production/{10 * i}"
            conn.execute(insert(Deployment).values(
                key=key, repository=REPO, environment="production", sha=sha, run_id=i, created_at=when,
                creator="dora", state="answered", answer="approved", answered_at=when,
            ))  # fmt: skip
            conn.execute(insert(HistoryRow).values(deployment_id=key, repository=REPO, environment="production",
                                                   sha=sha, created_at=when, features={}))  # fmt: skip
    engine.dispose()


def _decide_again(world: World, label: str) -> str:
    """Gate a second deployment of a commit already gated (its check run is complete already): wait for the answer."""
    world.request_gate(label)
    answer: str = world.wait(lambda: world.gate(label).answer, 60, f"an answer on {label}")
    return answer


# --- suspicion 3: a status labels its own deployment's row ------------------------------------------------------


def _gated_twice() -> tuple[SandboxState, Any, Any]:
    """The release's commit, deployed again a minute later in a new run (named "redeploy")."""
    state = in_working_hours(release_state())
    first = state.deployment(LABEL)[1]
    again = state.add_deployment(REPO, first.sha, "production", creator="dora", ref="main")
    again.created_at = first.created_at + 60
    again.name = "redeploy"
    state.named_deployments["redeploy"] = (REPO, again.id)
    return state, first, again


def test_a_failure_status_labels_the_deployment_it_names_not_the_newest_of_its_commit(database_url):
    """The same commit is gated twice (a re-deploy in a new run); the first deployment then reports failure.

    The failure belongs to the first deployment's history row; the re-deploy's row must stay unlabelled, and a
    success the re-deploy reports afterwards labels only its own row.
    """
    state, first, again = _gated_twice()
    with running_world(database_url, state) as world:
        assert decide(world, LABEL).answer == "approved"
        assert _decide_again(world, "redeploy") == "approved"
        now = world.state.now()
        _status(world, first.id, "failure", now + 1)
        world.settle()
        after_failure = world.query(select(Deployment.github_deployment_id, HistoryRow.outcome)
                                    .join(Deployment, Deployment.key == HistoryRow.deployment_id))  # fmt: skip
        _status(world, again.id, "success", now + 2)
        world.settle()
        after_success = world.query(select(Deployment.github_deployment_id, HistoryRow.outcome)
                                    .join(Deployment, Deployment.key == HistoryRow.deployment_id))  # fmt: skip
    assert dict(after_failure) == {first.id: "failure", again.id: None}
    assert dict(after_success) == {first.id: "failure", again.id: "success"}


def test_a_failure_status_of_the_older_workflow_run_labels_that_runs_release(database_url):
    """Same commit gated in two runs; the older run's deploy workflow fails (no deployment status of its own)."""
    from github_app.sandbox.webhooks import workflow_run_payload

    state, first, again = _gated_twice()
    with running_world(database_url, state) as world:
        assert decide(world, LABEL).answer == "approved"
        assert _decide_again(world, "redeploy") == "approved"
        world.state.end_run(REPO, first.run_id, "failure")  # stamps updated_at, as GitHub does
        response = world.send("workflow_run", workflow_run_payload(world.state, REPO, first.run_id))
        assert response.status_code == 202, response.text
        world.settle()
        labels = world.query(select(Deployment.github_deployment_id, HistoryRow.outcome)
                             .join(Deployment, Deployment.key == HistoryRow.deployment_id))  # fmt: skip
    assert dict(labels) == {first.id: "failure", again.id: None}


# --- suspicion 1: a sha label is bounded by the window and by the time of receipt --------------------------------


def test_a_sha_labelled_alert_long_after_its_release_is_not_blamed_on_it(database_url):
    """The release went live 40 hours ago (window 24 h); an alert labelled with its sha starts 10 hours ago.

    An unlabelled alert at that moment blames nobody (the release is too old); the label names which release,
    it does not stretch the window, so the release keeps its success. One inside the window still counts.
    """
    state = in_working_hours(release_state())
    repo = state.repo(REPO)
    old = repo.branches["main"]
    now = datetime.fromtimestamp(state.now(), UTC).replace(microsecond=0)
    _approved(database_url, [(old, now - timedelta(hours=41))])
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN), alert_window_hours=24.0) as world:
        deployed = world.state.add_deployment(REPO, old, "production", creator="dora", waiting=False).id
        _status(world, deployed, "success", (now - timedelta(hours=40)).timestamp())
        world.settle()
        _notify(world, _alert(now - timedelta(hours=10), "late-labelled", sha=old),
                _alert(now - timedelta(hours=10), "late-bare"))
        world.settle()
        late = world.query(select(Outcome.sha).where(Outcome.outcome == "incident"))
        _notify(world, _alert(now - timedelta(hours=30), "in-window", sha=old))
        world.settle()
        in_window = world.query(select(Outcome.source_key).where(Outcome.outcome == "incident"))
        labels = world.query(select(HistoryRow.outcome).where(HistoryRow.sha == old))
    assert late == []
    assert [r.source_key for r in in_window] == [f"alert:in-window:{(now - timedelta(hours=30)).isoformat()}"]
    assert [r.outcome for r in labels] == ["incident"]


def test_a_sha_labelled_alert_before_its_release_went_live_is_not_blamed_on_it(database_url):
    """An alert labelled with a release's sha, but starting before that release was ever deployed there."""
    state = in_working_hours(release_state())
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN)) as world:
        assert decide(world, LABEL).answer == "approved"
        now = world.state.now()
        _status(world, head.id, "success", now + 1)
        world.settle()
        _notify(world, _alert(datetime.fromtimestamp(now - 3600, UTC), "before", sha=head.sha))
        world.settle()
        incidents = world.query(select(Outcome.sha).where(Outcome.outcome == "incident"))
    assert incidents == []


def test_an_alert_starting_in_the_future_counts_from_when_it_was_received(database_url):
    """A clock-skewed (or forged) startsAt three days ahead: the incident is known from its receipt, not later.

    Taken as is, the release's outcome_at would lie in the future, hiding the incident from the features of every
    release gated in between; and an unlabelled alert would look for a release live three days from now.
    """
    state = in_working_hours(release_state())
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN)) as world:
        assert decide(world, LABEL).answer == "approved"
        _status(world, head.id, "success", world.state.now() + 1)
        world.settle()
        future = datetime.now(UTC) + timedelta(days=3)
        sent = datetime.now(UTC)
        _notify(world, _alert(future, "ahead-labelled", sha=head.sha), _alert(future, "ahead-bare"))
        world.settle()
        incidents = world.query(select(Outcome.sha, Outcome.observed_at).where(Outcome.outcome == "incident"))
        [(outcome, outcome_at)] = world.query(select(HistoryRow.outcome, HistoryRow.outcome_at)
                                              .where(HistoryRow.sha == head.sha))  # fmt: skip
    assert sorted(r.sha for r in incidents) == [head.sha, head.sha]
    for r in incidents:
        assert sent - timedelta(seconds=5) <= _aware(r.observed_at) <= sent + timedelta(seconds=30)
    assert outcome == "incident"
    assert _aware(outcome_at) <= sent + timedelta(seconds=30)


# --- suspicion 2: short and uppercase sha labels -----------------------------------------------------------------


def test_short_and_uppercase_sha_labels_name_the_release(database_url):
    """Dashboards and image tags carry the short sha, some in capitals: each still names gonogo's release."""
    state = in_working_hours(release_state())
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN)) as world:
        assert decide(world, LABEL).answer == "approved"
        now = world.state.now()
        _status(world, head.id, "success", now + 1)
        world.settle()
        started = datetime.fromtimestamp(now + 2, UTC)
        _notify(world, _alert(started, "upper", sha=head.sha.upper()), _alert(started, "short", commit=head.sha[:7]),
                _alert(started, "short-upper", sha=head.sha[:12].upper()))  # fmt: skip
        world.settle()
        incidents = world.query(select(Outcome.source_key, Outcome.sha).where(Outcome.outcome == "incident"))
        labels = world.query(select(HistoryRow.outcome).where(HistoryRow.sha == head.sha))
    assert sorted(r.source_key.split(":")[1] for r in incidents) == ["short", "short-upper", "upper"]
    assert {r.sha for r in incidents} == {head.sha}
    assert [r.outcome for r in labels] == ["incident"]


def test_an_ambiguous_unknown_or_malformed_sha_label_is_refused_with_its_reason(database_url, caplog):
    """Two of gonogo's releases share a 7-character prefix; other labels name no release or are not a commit id.

    None of them stores an incident (an outcome under such a label labels no row and would only inflate the
    environment's failure rate); each is logged as refused, saying why and what to do. A longer prefix that is
    unique resolves.
    """
    caplog.set_level(logging.INFO, logger="github_app.features.alerts")
    state = in_working_hours(release_state())
    now = datetime.fromtimestamp(state.now(), UTC).replace(microsecond=0)
    one, two = "abcdef1" + "0" * 33, "abcdef1" + "f" * 33
    _approved(database_url, [(one, now - timedelta(hours=3)), (two, now - timedelta(hours=2))])
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN)) as world:
        started = now - timedelta(hours=1)
        _notify(world, _alert(started, "ambiguous", sha="ABCDEF1"), _alert(started, "unknown", sha="1234567"),
                _alert(started, "tooshort", sha="abcdef"), _alert(started, "nothex", sha="v1.2.3-release"))
        world.settle()
        refused = world.query(select(Outcome.sha).where(Outcome.outcome == "incident"))
        _notify(world, _alert(started, "unique", sha="abcdef1ff"))
        world.settle()
        resolved = world.query(select(Outcome.sha).where(Outcome.outcome == "incident"))
        labels = dict(world.query(select(HistoryRow.sha, HistoryRow.outcome)))
    assert refused == []
    assert [r.sha for r in resolved] == [two]
    assert labels == {one: None, two: "incident"}
    reasons = {r.alert_label: r.reason for r in caplog.records if r.getMessage() == "alert.refused"}
    assert set(reasons) == {"ABCDEF1", "1234567", "abcdef", "v1.2.3-release"}
    assert "2 releases" in reasons["ABCDEF1"] and "full 40-character sha" in reasons["ABCDEF1"]
    assert "no release" in reasons["1234567"]
    assert "7 to 40 hexadecimal" in reasons["abcdef"] and "7 to 40 hexadecimal" in reasons["v1.2.3-release"]



# --- the row's outcome changes in one conditional statement -------------------------------------------------------


def test_a_success_racing_a_failure_never_overwrites_it(postgres_url: str) -> None:
    """A failure and a success of one release recorded at the same moment (two workers, PostgreSQL). Before, the
    labeller read the row's outcome and then wrote what it had decided from that read: the success read "no
    outcome" while the failure's write was not yet committed, waited for it, then overwrote it, and the model
    learnt that the failed release went well. The transition is now one conditional statement, re-checked by
    PostgreSQL against the row as the failure left it."""
    from sqlalchemy import text

    from github_app.features.outcomes import record_outcome

    when = datetime.now(UTC) - timedelta(hours=1)
    _approved(postgres_url, [("c" * 40, when)])
    engine = db.make_engine(postgres_url)
    results: dict[str, bool] = {}

    def record(outcome: str, offset: int) -> None:
        results[outcome] = record_outcome(
            engine, repository=REPO, environment="production", sha="c" * 40, outcome=outcome, source="test",
            source_key=f"race-{outcome}", observed_at=when + timedelta(minutes=offset),
        )  # fmt: skip

    def waiting() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )).scalar_one())  # fmt: skip

    import threading
    import time

    holder = engine.connect()
    tx = holder.begin()
    holder.execute(text("SELECT id FROM history WHERE sha = :sha FOR UPDATE"), {"sha": "c" * 40})
    failure = threading.Thread(target=record, args=("failure", 10))
    failure.start()
    deadline = time.monotonic() + 10
    while waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    success = threading.Thread(target=record, args=("success", 20))
    success.start()
    while waiting() < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert waiting() == 2, "both writers should be queued on the row"
    tx.rollback()
    holder.close()
    failure.join(10)
    success.join(10)
    with engine.connect() as conn:
        outcome, outcome_at = conn.execute(
            select(HistoryRow.outcome, HistoryRow.outcome_at).where(HistoryRow.sha == "c" * 40)).one()
    engine.dispose()
    assert results == {"failure": True, "success": True}  # both stored as outcomes
    assert outcome == "failure" and outcome_at == when + timedelta(minutes=10)
