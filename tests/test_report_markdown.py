"""Text from the change under deployment (test names, check names, report file paths, finding messages) is
shown in GitHub Markdown as text: it never pings a person or team, never adds HTML, links or images, and
never closes a collapsible section of the report.

Whoever writes the workflow of the change chooses these strings, so without this a change could ping a
whole organisation from gonogo's PR comment, or draw "✅ GO" as a heading into the report of a NO-GO.
"""

from __future__ import annotations

import re

from rules.report import check_run_markdown, markdown_inline
from tests.scenarios import LABEL, REPO, release_state, zipped
from tests.test_escalation import POLICY
from tests.world import running_world

HOSTILE = "@acme/everyone <h2>✅ GO: all checks passed</h2></details> [approve](https://evil.example/) ![t](https://evil.example/t.png) &#64;acme/admins \\`<b>x</b>`"


def _outside_code(markdown: str) -> str:
    """The Markdown with its code spans taken out, read as CommonMark reads them: a backslash escapes the
    character after it, and a backtick string opens a span only where an equal one closes it."""
    out, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\":
            out.append(markdown[i : i + 2])
            i += 2
            continue
        if markdown[i] == "`":
            run = re.match("`+", markdown[i:]).group()  # type: ignore[union-attr]
            close = re.compile(f"(?<!`){run}(?!`)").search(markdown, i + len(run))
            if close:
                i = close.end()
                continue
            out.append(run)
            i += len(run)
            continue
        out.append(markdown[i])
        i += 1
    return "".join(out)


def _assert_inert(markdown: str, own_details: int = 0) -> None:
    assert "@acme/everyone" not in markdown and "@acme/admins" not in markdown
    prose = _outside_code(markdown)
    for raw in ("<h2", "<b>", "<img", "&#64;"):
        assert raw not in prose, (raw, prose)
    assert not re.search(r"(?<!\\)\]\(https://evil", prose), prose  # a link or an image
    assert prose.count("</details>") <= own_details, prose


def test_markdown_inline_keeps_the_words_and_drops_the_markup() -> None:
    text = markdown_inline(HOSTILE)
    _assert_inert(text)
    assert "GO: all checks passed" in text and "evil.example" in text  # still readable
    assert markdown_inline("coverage 81% < 85% for a|b, see `gonogo assess`") == (
        "coverage 81% &lt; 85% for a\\|b, see `gonogo assess`")  # fmt: skip
    assert markdown_inline("x\n# heading\n- item") == "x # heading - item"


def test_a_hostile_report_path_is_text_in_the_escalation_comment(database_url: str) -> None:
    state = release_state(policy=POLICY, team_members=("rita", "dora"))
    head = state.deployment(LABEL)[1].sha
    ci = state.add_workflow_run(REPO, head, name="CI2", status="completed", conclusion="success")
    # a report file that cannot be read: its path is in the reasons of the escalation
    state.add_artifact(REPO, ci.id, "more-results", zipped({f"{HOSTILE}/junit-x.xml": "<testsuite><testcase"}))
    with running_world(database_url, state) as world:
        world.escalate(LABEL)
        (comment,) = world.state.comments(REPO, 7)
        _assert_inert(comment.body)
        assert "@acme/sre" in comment.body  # the reviewers are still asked, by name
        assert "could not be read" in comment.body and "GO: all checks passed" in comment.body


def test_a_failing_test_and_check_of_hostile_names_are_text_in_the_check_run(database_url: str) -> None:
    junit = ('<?xml version="1.0"?><testsuite name="evil" tests="1" failures="1"><testcase classname="pkg" '
             f'name="{HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}" file="api/orders.py" '
             'line="3"><failure message="@acme/admins &lt;img src=https://evil.example/t.png&gt;">x</failure>'
             '</testcase></testsuite>')  # fmt: skip
    state = release_state(policy=POLICY, team_members=("rita", "dora"))
    head = state.deployment(LABEL)[1].sha
    state.add_check_run(REPO, head, f"lint {HOSTILE}", conclusion="failure")
    ci = state.add_workflow_run(REPO, head, name="CI2", status="completed", conclusion="success")
    state.add_artifact(REPO, ci.id, "evil-results", zipped({"junit-evil.xml": junit}))
    with running_world(database_url, state) as world:
        world.request_gate(LABEL)
        world.wait_decided(LABEL)
        summary = world.check_run(LABEL).output["summary"]
    own = summary.count("<details><summary>")
    _assert_inert(summary, own_details=own)
    assert "GO: all checks passed" in summary and "lint @" in summary


def test_a_report_cut_to_its_limit_stays_inert() -> None:
    """Cutting the report must not cut a code span open: what followed it would be Markdown again."""
    from datetime import UTC, datetime

    from rules.pipeline import evaluate
    from rules.policy import default_policy
    from rules.samples import clean_evidence

    failures = [{"name": f"{HOSTILE} {i}", "classname": "t", "file": "t.py", "line": i + 1, "message": HOSTILE}
                for i in range(12)]  # fmt: skip
    ev = clean_evidence(tests={"total": 112, "passed": 100, "failed": 12, "failures": failures})
    decision = evaluate(ev, default_policy(), "production", datetime(2025, 6, 4, 10, 0, tzinfo=UTC))
    full = check_run_markdown(decision)
    _assert_inert(full, own_details=full.count("<details><summary>"))
    for limit in range(1500, 8000, 61):
        cut = check_run_markdown(decision, limit)
        assert len(cut.encode()) <= limit
        _assert_inert(cut, own_details=cut.count("<details><summary>"))
