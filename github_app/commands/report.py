"""`gonogo report`: gate quality and DORA figures for a window, from the code the API and dashboard use."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from github_app.commands.audit import DATABASE_OPTION, open_engine


def duration(seconds: float | None) -> str:
    """A duration the way people say it: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "–"
    for size, unit, digits in ((86400, "d", 1), (3600, "h", 1), (60, "min", 0)):
        if seconds >= size:
            return f"{seconds / size:.{digits}f} {unit}"
    return f"{seconds:.0f} s"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def rows(g: dict[str, Any], d: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures of one group as (label, value) pairs."""
    return [
        ("deployments requested", str(g["deployments"])),
        ("approved automatically", f"{g['approved_automatically']} ({pct(g['share_approved_automatically'])})"),
        ("escalated", f"{g['escalated']} ({pct(g['share_escalated'])})"),
        ("rejected automatically", f"{g['rejected_automatically']} ({pct(g['share_rejected_automatically'])})"),
        ("escaped failures", f"{g['escaped_failures']} of {g['approved']} approved ({pct(g['escaped_failure_rate'])})"),
        ("false blocks", (f"{g['false_blocks']} ({g['false_rejections']} rejections, "
                         f"{g['needless_escalations']} escalations)")),
        ("time to answer, automatic / human", (f"{duration(g['answer_seconds_automatic_median'])} / "
                                              f"{duration(g['answer_seconds_human_median'])} (median)")),
        ("reviewers' wait", (f"{duration(g['reviewer_wait_seconds_median'])} median, "
                            f"{duration(g['reviewer_wait_seconds_p90'])} p90; {g['waiting_now']} waiting now")),
        ("catch rate", f"{pct(g['catch_rate'])} of {g['failures_observed']} failures"),
        ("risk calibration (Brier)", "–" if g["brier_score"] is None else f"{g['brier_score']:.3f}"),
        ("deployment frequency", f"{d['deployments_per_week']:.1f} a week ({d['frequency_category']})"),
        ("lead time for changes", (f"{duration(d['lead_time_seconds_median'])} median "
                                  f"({d['lead_time_samples']} deployments)")),
        ("change failure rate", f"{pct(d['change_failure_rate'])} of {d['deployments_with_outcome']}"),
        ("time to restore", (f"{duration(d['time_to_restore_seconds_median'])} median ({d['restores']} restores, "
                            f"{d['unrestored_failures']} open)")),
    ]  # fmt: skip


def render_text(r: dict[str, Any]) -> str:
    w = r["window"]
    scope = " ".join(filter(None, [w["repository"], w["environment"]])) or "all repositories and environments"
    lines = [f"gonogo report: {scope}, {w['since'][:16]} to {w['until'][:16]} UTC", ""]
    sections = [("Overall", r["gate_quality"], r["dora"])]
    if len(r["groups"]) > 1:
        sections += [(f"{g['repository']} → {g['environment']}", g["gate_quality"], g["dora"]) for g in r["groups"]]
    for title, g, d in sections:
        lines.append(title)
        lines += [f"  {label:36} {value}" for label, value in rows(g, d)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(r: dict[str, Any]) -> str:
    w = r["window"]
    scope = " ".join(filter(None, [w["repository"], w["environment"]])) or "all repositories and environments"
    groups = [("Overall", r["gate_quality"], r["dora"])]
    groups += [(f"{g['repository']} → {g['environment']}", g["gate_quality"], g["dora"]) for g in r["groups"]]
    if len(r["groups"]) == 1:
        groups = groups[:1]
    labels = [label for label, _ in rows(groups[0][1], groups[0][2])]
    lines = [f"## gonogo report: {_md(scope)}", "", f"{w['since'][:16]} to {w['until'][:16]} UTC", "",
             "| | " + " | ".join(_md(t) for t, _, _ in groups) + " |", "|---" * (len(groups) + 1) + "|"]  # fmt: skip
    values = [dict(rows(g, d)) for _, g, d in groups]
    lines += [f"| {label} | " + " | ".join(_md(v[label]) for v in values) + " |" for label in labels]
    return "\n".join(lines) + "\n"


@click.command()
@DATABASE_OPTION
@click.option("--repo", "repository", default=None, help="owner/name (default: every repository)")
@click.option("--environment", "-e", default=None, help="Only this environment.")
@click.option("--since", default=None, help="Start: ISO-8601 date or time, or an age like 30d (default: 30d).")
@click.option("--until", default=None, help="End: ISO-8601 date or time, or an age (default: now).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
def report(database_url: str | None, repository: str | None, environment: str | None, since: str | None,
           until: str | None, fmt: str) -> None:  # fmt: skip
    """Print how good the gate was and the DORA figures over a window (docs/insights.md defines them)."""
    from github_app import insights

    now = datetime.now(UTC)
    try:
        window = insights.window_from(since, until, now, repository=repository, environment=environment)
    except insights.WindowError as exc:
        raise click.BadParameter(str(exc)) from None
    engine = open_engine(database_url)
    try:
        data = insights.report(engine, window, now).to_json()
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(render_markdown(data), nl=False)
    else:
        click.echo(render_text(data), nl=False)
