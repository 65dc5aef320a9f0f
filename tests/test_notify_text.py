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
