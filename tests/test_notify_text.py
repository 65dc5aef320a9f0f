"""Text from the change under deployment is text in a Teams card: Adaptive Card TextBlocks and fact values read
Markdown, links included, so a reason quoting a test or file name must not become a link or a list."""

from __future__ import annotations

import json
from typing import Any

from github_app import notify
from tests.test_notify import LINKS, SUMMARY

HOSTILE = "test_x [Approve now](https://evil.example/approve)\r- fake item\n**GO**"


def _texts(card: dict[str, Any]) -> list[str]:
    out = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            out.append(element["text"])
        elif element["type"] == "FactSet":
            out += [f["value"] for f in element["facts"]]
    return out


def test_a_hostile_reason_or_comment_is_no_link_in_a_teams_card() -> None:
    summary = {**SUMMARY, "reasons": [f"GNG-TEST-001 failed: {HOSTILE}"], "comment": HOSTILE,
               "reviewers": ["alice", "[x](https://evil.example/)"]}  # fmt: skip
    body = notify.teams_body("escalated", summary, LINKS)
    card = body["attachments"][0]["content"]
    texts = _texts(card)
    assert texts and all("](" not in t and "\r" not in t for t in texts), json.dumps(texts, ensure_ascii=False)
    assert any("Approve now" in t for t in texts)  # still readable
    assert [a["url"] for a in card["actions"]] == [LINKS["check_run"], LINKS["workflow_run"]]  # our own links stay


def test_a_dry_run_approval_says_what_the_gate_would_have_done() -> None:
    """In dry-run the gate approves everything: "Approved: octo/shop to production" over a NO-GO would tell the
    channel the release was judged fit. The headline says it was a dry run and what the verdict was."""
    summary = {**SUMMARY, "verdict": "no-go", "action": "approve", "mode": "dry-run"}
    for body in (notify.slack_body("approved", summary, LINKS), notify.teams_body("approved", summary, LINKS),
                 notify.webhook_body("approved", summary, LINKS)):  # fmt: skip
        text = json.dumps(body, ensure_ascii=False)
        assert "Dry run: approved although the verdict is NO-GO: octo/shop to production" in text, text[:300]
    enforced = notify.webhook_body("approved", {**SUMMARY, "verdict": "go", "action": "approve"}, LINKS)
    assert enforced["summary"] == "Approved: octo/shop to production"
