"""Render a decision: the `gonogo` check-run Markdown, annotations, the protection-rule comment, plain text."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from rules.types import Decision, Finding, Waiver

# GitHub's limits, all counted in bytes of UTF-8 here: GitHub says "characters" but counts bytes, so a report
# of emoji rows under 65,535 characters can still be refused
CHECK_RUN_LIMIT = 65_535  # a check run's output.summary and output.text
COMMENT_LIMIT = 1_024  # a protection-rule review comment
ISSUE_COMMENT_LIMIT = 65_536  # an issue or pull-request comment
ANNOTATION_MESSAGE_LIMIT = 65_535  # an annotation's message and raw_details (64 KB)
ANNOTATIONS_PER_REQUEST = 50
_MAX_CELL = 300
_MAX_TITLE = 255
_MAX_BLOCKING = 25
_MAX_LISTED = 10  # failing tests, security findings and transactions named in the report
_NOTABLE_REGRESSION_PCT = 10.0

_BADGE = {"go": "✅ GO", "escalate": "⚠️ ESCALATE", "no-go": "⛔ NO-GO"}
_STATUS = {"passed": "✅ passed", "failed": "❌ failed", "unknown": "❔ unknown", "skipped": "➖ skipped", "waived": "🟡 waived"}
_SEVERITY_ORDER = {"blocker": 0, "major": 1, "minor": 2}
_STATUS_ORDER = {"failed": 0, "unknown": 1, "waived": 2, "passed": 3, "skipped": 4}

T = TypeVar("T")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def size(text: str) -> int:
    """Return the length of ``text`` in UTF-8 bytes, the way GitHub measures its limits."""
    return len(text.encode("utf-8"))


def clip_bytes(text: str, limit: int, marker: str = "…") -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes, ending in ``marker`` when cut, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(0, limit - size(marker))
    return data[:room].decode("utf-8", errors="ignore") + (marker if size(marker) <= limit else "")


# Text from the change under deployment (test, check and file names, finding messages) is shown as text: no
# HTML, link or image of its own, and no @mention, which GitHub turns into a notification in a PR comment.
_PROSE_ESCAPES = {"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]"}
# GitHub links @name and @org/team where the @ does not follow a letter or digit (so not in user@host)
_MENTION = re.compile(r"(?<![A-Za-z0-9])@(?=[A-Za-z0-9])")
_ZERO_WIDTH_SPACE = "\u200b"
_URL_SAFE = ":/?#@!$&'*+,;=%~"


def _closing_fence(text: str, start: int, run: int) -> int:
    """Where the backtick string of exactly ``run`` backticks that closes a code span starts, or -1."""
    i = start
    while (i := text.find("`", i)) >= 0:
        end = i
        while end < len(text) and text[end] == "`":
            end += 1
        if end - i == run:
            return i
        i = end
    return -1


def markdown_text(text: str) -> str:
    """Make ``text`` render as itself in GitHub Markdown, on one line: its code spans stay code spans (inert
    already), everything else has HTML, link brackets and backslashes escaped, and no @ mentions anyone.

    The escapes follow CommonMark's reading: a backslash is written as an escaped backslash, so the character
    after it means what it means alone, and a backtick string opens a code span only where one closes it.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "`":
            end = i
            while end < len(text) and text[end] == "`":
                end += 1
            close = _closing_fence(text, end, end - i)
            if close < 0:  # no code span: plain backticks
                out.append("\\`" * (end - i))
                i = end
            else:
                out.append(text[i : close + end - i])
                i = close + end - i
            continue
        out.append(_PROSE_ESCAPES.get(ch, ch))
        i += 1
    return _MENTION.sub("@" + _ZERO_WIDTH_SPACE, "".join(out))


def markdown_inline(text: str, limit: int = _MAX_CELL, *, table: bool = True) -> str:
    """Text for one line of Markdown (a table cell, or a list item with ``table=False``): on one line, cut to
    ``limit`` characters before it is escaped (a cut never leaves a code span open), and inert
    (``markdown_text``); in a table, its pipes are escaped too (GitHub splits cells before reading code spans).
    """
    out = markdown_text(_clip(" ".join(text.splitlines()), limit))
    return out.replace("|", "\\|") if table else out


def code_span(text: str) -> str:
    """``text`` as one inline code span, fenced by more backticks than any run inside it."""
    runs = [len(r) for r in re.findall("`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip(" ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _link(label: str, url: str | None) -> str:
    """A Markdown link to an http(s) URL, its label inert; the label alone for any other URL."""
    if not url or urlsplit(url).scheme not in ("http", "https"):
        return label
    # parentheses, angle brackets, backticks and spaces percent-encoded: none can end the link early
    return f"[{label}]({quote(url, safe=_URL_SAFE)})"


def clip_markdown(text: str, limit: int) -> str:
    """Cut Markdown to ``limit`` UTF-8 bytes at the end of a line: a line cut short could end inside a code
    span, leaving what was code to be read as Markdown and HTML."""
    if size(text) <= limit:
        return text
    cut = clip_bytes(text, limit, "")
    return cut[: cut.rfind("\n") + 1] if "\n" in cut else cut


def _cell(value: object) -> str:
    return markdown_inline("" if value is None else str(value))


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.1 or x == 0 else f"{x:.1%}"


def _model_quality(d: Decision) -> str:
    """How good the model behind the number was on later deployments it had not learnt from."""
    q = d.risk.quality
    if q is None:
        return ""
    caught = "n/a" if q.catch_rate_10 is None else _pct(q.catch_rate_10)
    ece = "n/a" if q.ece is None else f"{q.ece:.3f}"
    return (f" On its {q.deployments} latest held-out deployments, gating the riskiest 10 % caught {caught} of "
            f"failures; calibration error (ECE) {ece}.")


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}/100"


def _risk_label(d: Decision) -> str:
    if d.risk.source == "model":
        return f"model {d.risk.model_version or '(unversioned)'}"
    if d.risk.source == "prior":
        return "cold-start prior"
    return "rule-based estimate"


def headline(d: Decision) -> str:
    """Return the one-line verdict with score, risk and confidence."""
    if d.mode == "dry-run":
        lead = f"🧪 DRY-RUN: would be {_BADGE[d.verdict]} (approved, dry-run mode)"
    elif d.policy_errors:
        lead = f"{_BADGE[d.verdict]} (invalid policy)"
    else:
        lead = _BADGE[d.verdict]
    return (
        f"{lead} · readiness {_score(d.readiness_score)} · risk {_pct(d.risk.probability)} ({_risk_label(d)}) · "
        f"confidence {_pct(d.confidence)}"
    )


def _finding_line(f: Finding) -> str:
    return f"**{f.rule_id}** {f.title}: {_cell(f.message)}"


_MAX_FILES_LISTED = 20


def refused_lines(d: Decision) -> list[str]:
    """Return one line per report file gonogo refused: the file, the format it was taken for, and why."""
    refused = d.evidence.refused
    out = [f"{r.path} ({r.kind}): {r.reason}" if r.path not in r.reason else f"{r.reason} ({r.kind})"
           for r in refused[:_MAX_FILES_LISTED]]  # fmt: skip
    if len(refused) > _MAX_FILES_LISTED:
        out.append(f"… and {len(refused) - _MAX_FILES_LISTED} more refused files")
    return out


def not_understood_lines(d: Decision) -> list[str]:
    """Return one line per file in the artifacts that no parser reads (capped), plus how many more."""
    ev = d.evidence
    out = [f"{f.path}: {f.detail}" for f in ev.not_understood[:_MAX_FILES_LISTED]]
    more = max(ev.not_understood_total, len(ev.not_understood)) - len(out)
    if more > 0:
        out.append(f"… and {more} more files not understood")
    return out


@dataclass(frozen=True)
class Item:
    """One line of a report section, with optional indented detail lines."""

    text: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """One titled part of the report; the Markdown and text renderers lay out the same sections."""

    title: str
    items: tuple[Item, ...] = ()
    numbered: bool = False
    lead: str = ""  # a sentence before the items
    table: tuple[tuple[str, ...], ...] = ()  # header row, then rows (text renders aligned columns)
    tail: str = ""  # a sentence after the items


def _items(lines: Sequence[str]) -> tuple[Item, ...]:
    return tuple(Item(line) for line in lines)


def _first_line(text: str, limit: int = 200) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return _clip(line, limit)


def failing_test_lines(d: Decision, limit: int = _MAX_LISTED) -> list[str]:
    """Return the first failing tests, each with its file and line and the first line of its message."""
    t = d.evidence.tests
    if not t.has_data:
        return []
    out = []
    for case in t.failures[:limit]:
        name = f"{case.classname}.{case.name}" if case.classname else case.name
        where = f" ({case.file}:{case.line})" if case.file and case.line else (f" ({case.file})" if case.file else "")
        message = _first_line(case.message, 160)
        also = f" [{case.where}]" if case.where else ""
        out.append(f"{case.outcome} {name}{where}{also}" + (f": {message}" if message else ""))
    bad = t.failed + t.errored
    if out and bad > len(out):
        out.append(f"… and {bad - len(out)} more failing tests ({bad} in all)")
    return out


_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "note": 4}


def security_lines(d: Decision, limit: int = _MAX_LISTED) -> list[str]:
    """Return the worst open security findings: severity, rule, where (path and line, or package) and title."""
    s = d.evidence.security
    if not s.has_data or not s.findings:
        return []
    worst = sorted(s.findings, key=lambda f: (_SEVERITY_RANK[f.severity], f.rule_id, f.path or "", f.line or 0))
    out = []
    for f in worst[:limit]:
        where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "")
        title = _first_line(f.title, 120)
        out.append(f"{f.severity} {f.rule_id}" + (f" in {f.package}" if f.package else "") + (f" at {where}" if where else "")
                   + (f": {title}" if title else "") + (f" ({f.note})" if f.note else ""))  # fmt: skip
    total = sum(s.counts.values()) or len(s.findings)
    if total > len(out):
        counts = ", ".join(f"{s.counts[k]} {k}" for k in _SEVERITY_RANK if s.counts.get(k))
        out.append(f"… {total} open findings in all ({counts})")
    return out


_FAILING_ERROR_RATE = 0.01


def load_test_lines(d: Decision, limit: int = _MAX_LISTED) -> list[str]:
    """Return the load-test transactions that fail (errors above 1 %) or regressed notably against the baseline."""
    p = d.evidence.performance
    if not p.has_data:
        return []
    failing = [t for t in p.transactions if t.error_rate is not None and t.error_rate > _FAILING_ERROR_RATE]
    regressed = [t for t in p.transactions if t not in failing and t.regression_pct is not None
                 and t.regression_pct > _NOTABLE_REGRESSION_PCT and t.significant is not False]  # fmt: skip
    failing.sort(key=lambda t: (-(t.error_rate or 0.0), t.name))
    regressed.sort(key=lambda t: (-(t.regression_pct or 0.0), t.name))
    out = []
    for t in (failing + regressed)[:limit]:
        facts = []
        if t.error_rate is not None and t.error_rate > _FAILING_ERROR_RATE:
            facts.append(f"{t.error_rate:.0%} errors")
        if t.regression_pct is not None and t.regression_pct > _NOTABLE_REGRESSION_PCT and t.significant is not False:
            facts.append(f"p95 {t.regression_pct:+.0f}% vs baseline")
        if t.p95_ms is not None:
            facts.append(f"p95 {t.p95_ms:,.0f} ms")
        facts.append(f"{t.samples:,} samples")
        out.append(f"{t.name}: {', '.join(facts)}")
    more = len(failing) + len(regressed) - len(out)
    if more > 0:
        out.append(f"… and {more} more transactions")
    return out


def _evidence_read_line(d: Decision) -> str:
    shares = ", ".join(f"{name} {share:.0%}" for name, share in d.evidence_read.items())
    return f"Confidence {_pct(d.confidence)}: evidence read per source: {shares}." if shares else (
        f"Confidence {_pct(d.confidence)}: no evidence source was read.")


def _risk_section(d: Decision) -> Section:
    lead = (f"Risk {_pct(d.risk.probability)} from the {_risk_label(d)}"
            + (f", base rate {_pct(d.risk.base_rate)}" if d.risk.base_rate is not None else "") + "."
            + _model_quality(d))  # fmt: skip
    drivers = [dr.text for dr in d.risk.drivers[:5]] or ["no driver moved the risk away from the base rate"]
    return Section("Top risk drivers", _items(drivers), lead=lead)


def report_sections(d: Decision) -> list[Section]:
    """Return the report as sections, in reading order; both renderers print exactly these, nothing else."""
    out: list[Section] = [Section("", _items(d.reasons[:_MAX_BLOCKING]))]  # why: right under the headline
    if d.policy_errors:
        out.append(Section("Policy errors", _items([code_span(e) for e in d.policy_errors[:50]])))
    if d.freeze:
        out.append(Section("Deployment freeze", _items([d.freeze.reason])))
    rows = tuple(
        (name, "n/a" if dim.score is None else f"{dim.score:.0f}", str(dim.passed), str(dim.failed), str(dim.unknown),
         str(dim.skipped), str(dim.waived))
        for name, dim in d.dimensions.items()
    )  # fmt: skip
    out.append(Section("Dimensions", lead=_evidence_read_line(d),
                       table=(("Dimension", "Score", "Passed", "Failed", "Unknown", "Skipped", "Waived"), *rows)))
    blocking = d.blocking_findings
    if blocking:
        items = [Item(f"{f.rule_id} {f.title}: {f.message}",
                      (f"Why: {f.why}", f"Fix: {f.remediation}", *(code_span(x) for x in f.details[:10])))
                 for f in blocking[:_MAX_BLOCKING]]  # fmt: skip
        if len(blocking) > _MAX_BLOCKING:
            items.append(Item(f"… and {len(blocking) - _MAX_BLOCKING} more blocking findings (see the findings table)"))
        out.append(Section("Blocking findings", tuple(items)))
    for title, lines in (
        ("Failing tests", failing_test_lines(d)),
        ("Worst security findings", security_lines(d)),
        ("Load-test transactions failing or regressed", load_test_lines(d)),
        ("Report files that could not be read (missing evidence, never approved)", refused_lines(d)),
        ("Files not understood (no gonogo parser reads them)", not_understood_lines(d)),
    ):
        if lines:
            out.append(Section(title, _items(lines)))
    if d.what_would_change:
        out.append(Section("What would change the outcome", _items([c.text for c in d.what_would_change])))
    shown = set(d.blocking)
    other = [f for f in d.findings if f.status in ("failed", "unknown", "waived") and f.rule_id not in shown]
    if other:
        out.append(Section("Other findings", _items([f"[{f.status}] {f.rule_id} ({f.severity}) {f.title}: {f.message}"
                                                     for f in other[:_MAX_BLOCKING]])))  # fmt: skip
    recs = [r for r in d.recommendations if r.rule_id not in shown][:5]
    if recs:
        out.append(Section("Recommendations", _items([f"{r.rule_id} {r.title} ({r.severity}, {r.reason}): {r.remediation}"
                                                      for r in recs]), numbered=True))  # fmt: skip
    out.append(_risk_section(d))
    s = d.strategy
    out.append(Section("Rollout strategy", _items(s.steps), numbered=True, lead=f"{s.name}: {s.reason}",
                       tail=f"Watch: {'; '.join(s.watch)}" if s.watch else ""))
    if d.verdict == "escalate" or d.mode == "dry-run":
        who = [f"@{u}" for u in d.reviewers.users] + [f"team `{t}`" for t in d.reviewers.teams]
        line = (", ".join(who) or "anyone with write access (no reviewers in the policy)") + (
            " (four eyes: the deployer cannot approve)" if d.reviewers.four_eyes else "")
        out.append(Section("Who decides", _items([line])))
    if d.waivers:
        out.append(Section("Active waivers", _items([_active_waiver_line(w) for w in d.waivers])))
    if d.lapsed_waivers:
        out.append(Section("Waivers that no longer count", _items([
            f"{w.rule_id} waived by @{w.author} until {w.expires_at:%Y-%m-%d}: expired under the current "
            f"max_lifetime (waivers.max_lifetime) on {(w.counts_until or w.expires_at):%Y-%m-%d %H:%M} UTC; "
            f"{w.reason}" for w in d.lapsed_waivers
        ])))  # fmt: skip
    learned = [f"{r.rule_id}: {'a recommendation here' if r.relaxed else 'still escalates'} ({r.why})"
               for r in d.learning if r.flagged or r.error]  # fmt: skip
    if learned:
        out.append(Section("Learned from this repository's outcomes", _items(learned)))
    return [x for x in out if x.items or x.table or x.lead]  # never an empty heading


def _active_waiver_line(w: Waiver) -> str:
    if w.counts_until is not None and w.counts_until < w.expires_at:  # cut short by the current max_lifetime
        return (f"{w.rule_id} waived by @{w.author} until {w.counts_until:%Y-%m-%d %H:%M} UTC (its own end, "
                f"{w.expires_at:%Y-%m-%d}, is past the current max_lifetime): {w.reason}")  # fmt: skip
    return f"{w.rule_id} waived by @{w.author} until {w.expires_at:%Y-%m-%d}: {w.reason}"


def _markdown_section(section: Section) -> list[str]:
    out = [f"### {section.title}", ""] if section.title else []
    if section.lead:
        out += [_cell(section.lead), ""]
    if section.table:
        header, *rows = section.table
        out.append("| " + " | ".join(header) + " |")
        out.append("|---|" + "---:|" * (len(header) - 1))
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    for i, item in enumerate(section.items, 1):
        out.append(f"{i}. {_cell(item.text)}" if section.numbered else f"- {_cell(item.text)}")
        out += [f"  - {_cell(x)}" for x in item.details]
    if section.tail:
        out += ["", _cell(section.tail)]
    return [*out, ""]


def _text_section(section: Section) -> list[str]:
    out = [f"{section.title}:"] if section.title else []
    if section.lead:
        out.append(f"  {section.lead}")
    if section.table:
        widths = [max(len(row[i]) for row in section.table) for i in range(len(section.table[0]))]
        for row in section.table:
            out.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    for i, item in enumerate(section.items, 1):
        out.append(f"  {i}. {item.text}" if section.numbered else f"  - {item.text}")
        out += [f"      {x}" for x in item.details]
    if section.tail:
        out.append(f"  {section.tail}")
    return [*out, ""]


def _head(d: Decision) -> list[str]:
    out = [f"## {headline(d)}", ""]
    for section in report_sections(d):
        out += _markdown_section(section)
    return out


def _findings_rows(findings: list[Finding]) -> list[str]:
    rows = []
    for f in sorted(findings, key=lambda f: (_STATUS_ORDER[f.status], _SEVERITY_ORDER[f.severity], f.rule_id)):
        value = "" if f.value is None else f"{f.value}{f.unit if f.unit in ('%', 'ms', 'h', 'pp') else ''}"
        threshold = "" if f.threshold is None else f"{f.threshold:g}"
        rows.append(f"| {f.rule_id} | {_cell(f.title)} | {f.severity} | {_STATUS[f.status]} | {_cell(value)} | {threshold} | {_cell(f.message)} |")
    return rows


def _provenance_rows(d: Decision) -> list[str]:
    rows = []
    for name, part in d.evidence.parts().items():
        sources = "; ".join(_clip(f"{p.source} {p.detail}".strip(), 120) for p in part.provenance[:5])
        if len(part.provenance) > 5:
            sources += f"; +{len(part.provenance) - 5} more"
        rows.append(f"| {name} | {part.availability} | {_cell(part.reason)} | {_cell(sources)} |")
    return rows


def _check_rows(d: Decision) -> list[str]:
    icon = {"success": "✅", "neutral": "✅", "skipped": "⏭️", "failure": "❌", "error": "❌", "cancelled": "❌",
            "timed_out": "❌", "action_required": "❌", "stale": "❌"}  # fmt: skip
    rows = []
    failing_first = sorted(d.evidence.checks.checks, key=lambda c: (not c.failed, c.completed, c.name))
    for c in failing_first:
        state = c.conclusion if c.completed else c.status
        link = _link(_cell(c.name), c.url)
        rerun = f" (ran {c.attempts}×)" if c.attempts > 1 else ""
        rows.append(f"| {link} | {c.kind.replace('_', ' ')} | {icon.get(str(state), '⏳')} {state}{rerun} |")
    return rows


def _details(summary: str, header: list[str], rows: list[str], budget: int) -> tuple[str, int]:
    """Render a collapsible table within ``budget`` bytes; return it and the rows left out."""
    opening = f"<details><summary>{summary}</summary>\n\n" + "\n".join(header) + "\n"
    closing = "\n</details>\n"
    text, kept, used = opening, 0, size(opening)
    for row in rows:
        row_size = size(row) + 1
        if used + row_size + size(closing) + 80 > budget:
            break
        text += row + "\n"
        used += row_size
        kept += 1
    left = len(rows) - kept
    if left:
        text += f"\n_{left} rows omitted to fit GitHub's size limit._\n"
    if kept == 0 and rows:
        return "", left
    return text + closing, left


def check_run_markdown(d: Decision, limit: int = CHECK_RUN_LIMIT) -> str:
    """Render the check-run report, staying under ``limit`` UTF-8 bytes by dropping the least important parts."""
    note_room = 200
    head = "\n".join(_head(d)) + "\n"
    if size(head) > limit - note_room:
        cut = limit - note_room
        return clip_markdown(head, cut) + (
            "\n\n_Report truncated to fit GitHub's size limit; see `gonogo assess --format json` for all._\n")
    budget = limit - size(head) - note_room
    sections: list[str] = []
    omitted: list[str] = []
    not_passed = [f for f in d.findings if f.status in ("failed", "unknown", "waived")]
    rest = [f for f in d.findings if f.status not in ("failed", "unknown", "waived")]
    header = ["| Rule | Title | Severity | Status | Value | Threshold | Details |", "|---|---|---|---|---|---|---|"]
    checks = d.evidence.checks
    plan = [
        (f"Checks considered ({len(checks.checks)})", ["| Check | Kind | Result |", "|---|---|---|"], _check_rows(d),
         "checks considered"),
        (f"Findings needing attention ({len(not_passed)})", header, _findings_rows(not_passed), "findings needing attention"),
        (f"Passed and skipped rules ({len(rest)})", header, _findings_rows(rest), "passed and skipped rules"),
        ("Evidence provenance", ["| Part | Availability | Reason | Sources |", "|---|---|---|---|"], _provenance_rows(d),
         "evidence provenance"),
        (f"Files not understood ({max(d.evidence.not_understood_total, len(d.evidence.not_understood))})",
         ["Files in the artifacts that no gonogo parser reads; see docs/artifacts.md.", ""],
         [f"- {markdown_inline(code_span(_clip(' '.join(line.splitlines()), _MAX_CELL - 10)))}"
          for line in not_understood_lines(d)], "files not understood"),
    ]  # fmt: skip
    for summary, hdr, rows, label in plan:
        if not rows:
            continue
        text, left = _details(summary, hdr, rows, budget)
        if left:
            omitted.append(f"{left} rows of {label}" if text else label)
        sections.append(text)
        budget -= size(text)
    out = head + "\n".join(s for s in sections if s)
    if omitted:
        out += "\n_Report truncated to fit GitHub's size limit: omitted " + ", ".join(omitted) + "._\n"
    return clip_markdown(out, limit)


def render_text(d: Decision) -> str:
    """Render the report for terminals: the same sections as the check run, as plain text."""
    lines = [headline(d), ""]
    for section in report_sections(d):
        lines += _text_section(section)
    return "\n".join(lines).rstrip() + "\n"


_LEVEL = {"critical": "failure", "high": "failure", "medium": "warning", "low": "notice", "note": "notice"}


def annotations(d: Decision) -> list[dict[str, Any]]:
    """Return GitHub check-run annotations for failing tests and security findings that have a path and line."""
    out: list[dict[str, Any]] = []
    ev = d.evidence
    if ev.tests.has_data:
        for case in ev.tests.failures:
            if not case.file or not case.line:
                continue
            name = f"{case.classname}.{case.name}" if case.classname else case.name
            out.append({
                "path": case.file, "start_line": case.line, "end_line": case.line, "annotation_level": "failure",
                "title": clip_bytes(f"Test {case.outcome}: {name}", _MAX_TITLE),
                "message": clip_bytes(case.message or f"{name} {case.outcome}", ANNOTATION_MESSAGE_LIMIT),
            })  # fmt: skip
    if ev.security.has_data:
        rank = {"critical": 0, "high": 1, "medium": 2, "low": 3, "note": 4}
        for f in sorted(ev.security.findings, key=lambda f: rank[f.severity]):
            if not f.path or not f.line:
                continue
            out.append({
                "path": f.path, "start_line": f.line, "end_line": f.line, "annotation_level": _LEVEL[f.severity],
                "title": clip_bytes(f"{f.severity.capitalize()} {f.source}: {f.rule_id}", _MAX_TITLE),
                "message": clip_bytes((f.title or f.rule_id) + (f"\n{f.url}" if f.url else ""),
                                      ANNOTATION_MESSAGE_LIMIT),
            })  # fmt: skip
    return out


def batches(items: Sequence[T], size: int = ANNOTATIONS_PER_REQUEST) -> list[list[T]]:
    """Split items into lists of at most ``size`` (GitHub takes 50 annotations per request)."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def protection_comment(d: Decision, check_run_url: str) -> str:
    """Return the protection-rule review comment: the verdict in one line plus the link, at most 1,024 bytes."""
    if d.mode == "dry-run":
        verdict = f"gonogo dry-run: would be {d.verdict.upper()}, approved because the policy is in dry-run mode"
    else:
        verdict = f"gonogo: {d.verdict.upper()}"
    facts = f" for {d.environment} (readiness {_score(d.readiness_score)}, risk {_pct(d.risk.probability)}, confidence {_pct(d.confidence)})"
    reason = f": {d.reasons[0]}" if d.reasons else ""
    link = clip_bytes(f"\nDetails: {check_run_url}", COMMENT_LIMIT // 2)
    line = " ".join((verdict + facts + reason).split())
    return clip_bytes(line, COMMENT_LIMIT - size(link)) + link
