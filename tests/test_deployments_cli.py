"""`gonogo deployments list|show` on decisions made end to end (sandbox + app over HTTP)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from github_app.cli import cli
from github_app.sandbox.webhooks import issue_comment_payload
from tests.scenarios import LABEL, REPO
from tests.test_escalation import escalated_world


def _run(database_url: str, *args: str):
    return CliRunner().invoke(cli, ["deployments", *args, "--database-url", database_url])


def test_list_and_show_an_escalation_before_and_after_a_reviewer_decides(database_url):
    with escalated_world(database_url) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        _, dep = world.state.deployment(LABEL)

        waiting = _run(database_url, "list", "--waiting")
        assert waiting.exit_code == 0, waiting.output
        header, line = waiting.stdout.strip().splitlines()
        assert header.split()[:4] == ["DEPLOYMENT", "SHA", "STATE", "VERDICT"]
        assert line.startswith(f"{REPO}#{dep.run_id}/{dep.environment}")
        assert "escalated" in line and "escalate" in line and line.rstrip().endswith("@acme/sre")

        listed = json.loads(_run(database_url, "list", "--format", "json").stdout)
        assert [(d["state"], d["verdict"], d["answer"]) for d in listed] == [("escalated", "escalate", None)]
        assert listed[0]["reviewers"] == ["@acme/sre"] and 0 <= listed[0]["risk"] <= 1
        assert listed[0]["strategy"] in {"direct", "canary", "blue-green", "feature-flag"}

        ref = f"{REPO}#{dep.run_id}"
        shown = _run(database_url, "show", ref)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.startswith(f"{REPO} run {dep.run_id} to {dep.environment} at {dep.sha[:12]}")
        assert "state escalated, answer none yet" in shown.stdout
        assert "Dimensions:" in shown.stdout and "Rollout strategy:" in shown.stdout

        payload = issue_comment_payload(world.state, REPO, 7, "/gonogo reject the e2e suite is still red", "rita")
        assert world.send("issue_comment", payload).status_code == 202
        world.wait(lambda: world.gate(LABEL).answer, what="the rejection")
        # GitHub hears the answer first; the deployment row is marked answered right after
        after = world.wait(lambda: (r := _run(database_url, "show", ref)).stdout.count("state answered") and r,
                           what="the deployment marked answered")  # fmt: skip

        assert _run(database_url, "list", "--waiting").stdout.strip() == "No deployments match."
        assert "state answered, answer rejected" in after.stdout
        assert "Reviews:" in after.stdout and "rita reject: the e2e suite is still red" in after.stdout
        detail = json.loads(_run(database_url, "show", listed[0]["key"], "--format", "json").stdout)
        assert detail["decision"]["verdict"] == "escalate" and detail["answer"] == "rejected"
        assert [(r["actor"], r["action"], r["allowed"]) for r in detail["reviews"]] == [("rita", "reject", True)]
        markdown = _run(database_url, "show", listed[0]["key"], "--format", "markdown").stdout
        assert markdown.startswith("#") or "|" in markdown
        assert _run(database_url, "list", "--state", "answered", "--repo", REPO).stdout.count(REPO) == 1
        assert _run(database_url, "list", "--repo", "someone/else").stdout.strip() == "No deployments match."


def test_show_names_what_it_could_not_find(database_url):
    missing = _run(database_url, "show", "octo/none#12")
    assert missing.exit_code == 1 and "No deployment 'octo/none#12' found" in missing.output
    assert _run(database_url, "list").stdout.strip() == "No deployments."
