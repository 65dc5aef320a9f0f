"""Re-running gonogo's check run on an escalated deployment stores a second decision over the same history row."""

from __future__ import annotations

from sqlalchemy import func, select

from github_app import audit, db
from github_app.db.models import AuditEntry, DecisionRecord, Deployment, HistoryRow
from github_app.sandbox.webhooks import check_run_payload
from tests.scenarios import LABEL, REPO, release_state
from tests.world import running_world

POLICY = """
environments:
  production:
    reviewers:
      teams: [acme/sre]
"""


def _counts(database_url: str) -> tuple[int, int, int, str | None]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            decisions = conn.execute(select(func.count()).select_from(DecisionRecord)).scalar_one()
            history = conn.execute(select(func.count()).select_from(HistoryRow)).scalar_one()
            audited = conn.execute(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.kind == "decision")
            ).scalar_one()
            lease = conn.execute(select(Deployment.lease_owner)).scalar_one()
        return decisions, history, audited, lease
    finally:
        engine.dispose()


def test_rerun_of_an_escalated_deployment_decides_again_keeping_one_history_row(database_url):
    state = release_state(checks_running=True, policy=POLICY, team_members=("rita",))
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        assert world.gate(LABEL).answer is None  # escalated: waiting for a reviewer
        world.wait(lambda: _counts(database_url)[3] is None, what="the lease to be released")
        assert _counts(database_url) == (1, 1, 1, None)

        run = world.check_run(LABEL)
        response = world.send("check_run", check_run_payload(world.state, REPO, run.id, "rerequested"))
        assert response.status_code == 202, response.text
        world.wait(lambda: _counts(database_url)[0] == 2, what="a second decision")
        world.wait(lambda: _counts(database_url)[3] is None, what="the lease to be released")

        decisions, history, audited, _ = _counts(database_url)
        assert (decisions, history, audited) == (2, 1, 2)
        engine = db.make_engine(database_url)
        try:
            assert audit.verify(engine).ok
            with engine.connect() as conn:
                row = conn.execute(select(Deployment.state, Deployment.decision_id)).one()
                latest = conn.execute(select(func.max(DecisionRecord.id))).scalar_one()
        finally:
            engine.dispose()
        assert row.state == "escalated" and row.decision_id == latest
