"""Outcomes, attacked: what the deployer's workflow can post must never take a failure off the release it belongs to.

The deployer (dora) can create deployments of any commit, to any environment, and post their statuses with the
workflow's token; GitHub sends each as a signed ``deployment_status`` webhook. A success posted that way is the
deployer's word (docs/outcomes.md): it may never decide which release an alert is blamed on, hide a rollback,
or water down the environment's recent failure rate. Each test drives the app over HTTP against the sandbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import insert, select

from github_app import db
from github_app.db.models import Deployment, HistoryRow, Outcome
from github_app.sandbox.webhooks import deployment_status_payload
from github_app.settings import Secret
from tests.scenarios import LABEL, REPO, decide, release_state, stored
from tests.test_learned_thresholds import in_working_hours
from tests.world import World, running_world

TOKEN = "am-token-0123456789abcdef"


def _status(world: World, deployment_id: int, state: str, at: float) -> None:
    """GitHub records a status on the deployment at ``at`` (UNIX time) and sends its webhook."""
    rec = world.state.add_deployment_status(REPO, deployment_id, state, creator="dora")
    rec.created_at = at
    payload = deployment_status_payload(world.state, deployment_id, full_name=REPO)
    response = world.send("deployment_status", payload, f"status-{rec.id}")
    assert response.status_code in (200, 202), response.text


def _decoy(world: World, n: int = 1) -> list[int]:
    """Ungated deployments to production of commits gonogo never saw, as the deployer's token creates them."""
    repo = world.state.repo(REPO)
    base = repo.commits[repo.branches["main"]].parents[0]
    ids = []
    for i in range(n):
        sha = world.state.add_commit(REPO, message=f"Decoy {i}", author="dora", parents=[base], branch=f"decoy-{i}").sha
        ids.append(world.state.add_deployment(REPO, sha, "production", creator="dora", waiting=False).id)
    return ids


def _alert(world: World, started: datetime) -> None:
    alert = {"status": "firing", "labels": {"alertname": "HighErrorRate", "severity": "critical", "repository": REPO,
                                            "environment": "production"},
             "annotations": {}, "startsAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "endsAt": "0001-01-01T00:00:00Z",
             "fingerprint": "f00d"}  # fmt: skip
    body = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "gonogo", "alerts": [alert]}
    response = httpx.post(f"{world.app_url}/webhooks/alertmanager", content=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                          timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text


def test_a_success_posted_for_an_ungated_commit_does_not_take_the_alert_off_the_release(database_url):
    """The release goes live; the deployer then marks some other commit deployed fine; monitoring alerts.

    The alert belongs to the release gonogo let through, not to a commit that never passed the gate.
    """
    state = in_working_hours(release_state())
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state, alertmanager_token=Secret(TOKEN)) as world:
        gate = decide(world, LABEL)
        assert gate.answer == "approved"
        now = world.state.now()
        _status(world, head.id, "success", now + 1)
        [decoy] = _decoy(world)
        _status(world, decoy, "success", now + 2)
        world.settle()
        _alert(world, datetime.fromtimestamp(now + 3, UTC))
        world.settle()
        blamed = world.query(select(Outcome.sha).where(Outcome.outcome == "incident"))
        labels = dict(world.query(select(HistoryRow.sha, HistoryRow.outcome)))
    assert [r.sha for r in blamed] == [head.sha]
    assert labels[head.sha] == "incident"


def _approved(database_url: str, shas: list[str], start: datetime) -> None:
    """Earlier releases gonogo let through, stored as the gate stores them (deployment row and history row)."""
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        for i, sha in enumerate(shas):
            key, when = f"{REPO}#{7000 + i}/production/{70000 + i}", start + timedelta(minutes=i)
            conn.execute(insert(Deployment).values(
                key=key, repository=REPO, environment="production", sha=sha, run_id=7000 + i, created_at=when,
                creator="dora", state="answered", answer="approved", answered_at=when,
            ))  # fmt: skip
            conn.execute(insert(HistoryRow).values(deployment_id=key, repository=REPO, environment="production",
                                                   sha=sha, created_at=when, features={}))  # fmt: skip
    engine.dispose()


def test_a_success_posted_for_an_ungated_commit_does_not_hide_a_rollback(database_url):
    """Releases a then b go out fine; the deployer marks a decoy deployed, then a goes back out: b was rolled back."""
    state = in_working_hours(release_state())
    repo = state.repo(REPO)
    a = repo.commits[repo.branches["main"]].parents[0]
    b = repo.branches["main"]
    _approved(database_url, [a, b], datetime.fromtimestamp(state.now() - 3600, UTC))
    with running_world(database_url, state) as world:
        now = world.state.now()
        first = world.state.add_deployment(REPO, a, "production", creator="dora", waiting=False).id
        second = world.state.add_deployment(REPO, b, "production", creator="dora", waiting=False).id
        _status(world, first, "success", now - 1800)
        _status(world, second, "success", now - 1200)
        [decoy] = _decoy(world)
        _status(world, decoy, "success", now - 600)
        back = world.state.add_deployment(REPO, a, "production", creator="dora", waiting=False).id
        _status(world, back, "success", now - 300)
        world.settle()
        labels = dict(world.query(select(HistoryRow.sha, HistoryRow.outcome)))
        rolled = world.query(select(Outcome.sha).where(Outcome.outcome == "rollback"))
    assert [r.sha for r in rolled] == [b]
    assert labels[b] == "rollback"


def test_success_statuses_cannot_water_down_the_recent_failure_rate(database_url):
    """Two of four recent releases failed; the deployer posts forty successes (ungated, and repeats of one).

    The environment's failure rate is a share of releases: still one half, whatever else was posted.
    """
    state = in_working_hours(release_state())
    shas = [state.add_commit(REPO, message=f"Earlier {i}", author="bob", branch=f"earlier-{i}").sha for i in range(4)]
    _approved(database_url, shas, datetime.fromtimestamp(state.now() - 5 * 86400, UTC))
    with running_world(database_url, state) as world:
        now = world.state.now()
        for i, (sha, outcome) in enumerate(zip(shas, ["failure", "success", "failure", "success"], strict=True)):
            dep = world.state.add_deployment(REPO, sha, "production", creator="dora", waiting=False).id
            _status(world, dep, outcome, now - 4 * 86400 + i * 3600)
        for i, decoy in enumerate(_decoy(world, 20)):
            _status(world, decoy, "success", now - 86400 + i)
        for i in range(20):  # the same released commit reported deployed fine again and again
            _status(world, dep, "success", now - 3600 + i)
        world.settle()
        decide(world, LABEL)
        evidence, decision, _ = stored(world, LABEL)
    assert evidence.operational.env_failure_rate_30d == 0.5
    [finding] = [f for f in decision["findings"] if f["rule_id"] == "GNG-OPS-001"]
    assert finding["status"] == "failed"


def test_a_success_posted_for_a_release_gonogo_rejected_does_not_label_it(database_url):
    """gonogo rejects a release with a critical vulnerability; the deployer deploys it around the gate and marks it
    deployed fine. The risk model must not learn from that row that such a release succeeds; a failure still counts.
    """
    state = in_working_hours(release_state(critical_vuln=True))
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state) as world:
        gate = decide(world, LABEL)
        assert gate.answer == "rejected"
        around = world.state.add_deployment(REPO, head.sha, "production", creator="dora", waiting=False).id
        _status(world, around, "success", world.state.now() + 1)
        world.settle()
        after_success = world.query(select(HistoryRow.outcome).where(HistoryRow.sha == head.sha))
        _status(world, around, "failure", world.state.now() + 2)
        world.settle()
        after_failure = world.query(select(HistoryRow.outcome).where(HistoryRow.sha == head.sha))
    assert [r.outcome for r in after_success] == [None]
    assert [r.outcome for r in after_failure] == ["failure"]


def test_a_release_fails_once_at_the_first_failure_seen(database_url):
    """A failure status, then days later an error status for the same release: the row keeps the first time.

    Later releases' features may know of a failure only from when it was seen; moving the time to the last
    report would hide it from the releases in between. An earlier failure delivered late moves it back.
    """
    state = in_working_hours(release_state())
    head = state.deployment(LABEL)[1]
    with running_world(database_url, state) as world:
        assert decide(world, LABEL).answer == "approved"
        deployed = world.state.now()
        _status(world, head.id, "failure", deployed + 600)
        world.settle()
        _status(world, head.id, "error", deployed + 3 * 86400)
        world.settle()
        kept = world.query(select(HistoryRow.outcome, HistoryRow.outcome_at).where(HistoryRow.sha == head.sha))
        _status(world, head.id, "failure", deployed + 60)  # an earlier report, delivered last
        world.settle()
        earliest = world.query(select(HistoryRow.outcome_at).where(HistoryRow.sha == head.sha))
    [(outcome, at)] = kept
    assert outcome == "failure"
    assert abs((at.replace(tzinfo=at.tzinfo or UTC) - datetime.fromtimestamp(deployed + 600, UTC)).total_seconds()) < 2
    [(first,)] = earliest
    assert abs((first.replace(tzinfo=first.tzinfo or UTC) - datetime.fromtimestamp(deployed + 60, UTC)).total_seconds()) < 2
