"""GitHub's text limits count UTF-8 bytes: reports full of emoji are budgeted in bytes, and a check run that
cannot be published after the answer went out does not evaluate the deployment again."""

from __future__ import annotations

import httpx
import pytest

from rules.report import clip_bytes, size
from tests.scenarios import LABEL, REPO, release_state
from tests.test_sandbox import sandbox, token_for  # noqa: F401 - the fixture is used by name
from tests.world import running_world

CHECK_RUNS = "/repos/acme/api/check-runs/*"


def test_clip_bytes_never_cuts_inside_a_character():
    text = "🚀" * 10  # 40 bytes
    cut = clip_bytes(text, 15)
    assert size(cut) <= 15 and cut == "🚀" * 3 + "…"
    assert clip_bytes("short", 15) == "short"


def test_a_report_of_emoji_rows_fits_githubs_byte_limit(database_url):
    state = release_state()
    _, dep = state.deployment(LABEL)
    # 1,500 checks with emoji in their names: under 65,535 characters of report rows, well over 65,535 bytes
    for i in range(1500):
        state.add_check_run(REPO, dep.sha, f"🚀🧪 {i:04d} ✅", conclusion="success")
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        gate = world.wait_decided(LABEL, timeout=120)
        run = world.check_run(LABEL)
        refused = [c for c in world.state.calls("PATCH", CHECK_RUNS) if c.status == 422]
    assert not refused  # GitHub's 422 would leave the check run in progress for good
    assert run.status == "completed" and gate.answer is not None
    summary = run.output["summary"]
    assert len(summary) < size(summary) <= 65_535  # budgeted in bytes, not characters
    assert "omitted" in summary


def test_a_check_run_refused_after_the_answer_does_not_run_the_gate_again(database_url):
    # no test reports: the deployment escalates, so nothing marks it answered before the check run completes
    with running_world(database_url, release_state(artifacts_ok=False)) as world:
        world.state.inject("PATCH", CHECK_RUNS, "status", status=422, times=1)
        world.request_gate(LABEL)
        world.wait(lambda: world.deliveries() and world.deliveries()[0].state == "done", what="the delivery done")
        run = world.check_run(LABEL)
        collected = [c for c in world.state.calls("GET", "/repos/acme/api/code-scanning/alerts")
                     if c.query.get("state") == "open"]  # fmt: skip
        patches = [c.status for c in world.state.calls("PATCH", CHECK_RUNS)]
    assert world.deliveries()[0].attempts == 1
    assert len(collected) == 1  # the evidence was read once
    assert patches == [422, 200]  # the full report refused, then the verdict alone
    assert run.status == "completed" and run.conclusion == "action_required"
    assert "could not be published" in run.output["summary"]
    assert [a["identifier"] for a in run.actions] == ["approve", "reject"]  # reviewers still get the buttons


@pytest.mark.parametrize(("field", "limit"), [("summary", 65_535), ("text", 65_535)])
def test_the_sandbox_refuses_output_over_the_byte_limit_as_github_does(sandbox, field, limit):  # noqa: F811
    state, url = sandbox
    token = token_for(url, state)
    headers = {"Authorization": f"token {token}"}

    def create(text: str) -> httpx.Response:
        output = {"title": "t", "summary": "s", field: text}
        return httpx.post(f"{url}/repos/acme/shop/check-runs", headers=headers,
                          json={"name": "x", "head_sha": "b" * 40, "output": output})  # fmt: skip

    emoji = "🚀" * (limit // 4 + 1)  # 16,384 characters, 65,536 bytes
    refused = create(emoji)
    assert refused.status_code == 422
    assert f"Only {limit} characters are allowed; {size(emoji)} were supplied" in refused.json()["message"]
    assert create("a" * limit).status_code == 201
