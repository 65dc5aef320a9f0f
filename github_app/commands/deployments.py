"""`gonogo deployments list|show`: what gonogo decided, what waits for a reviewer, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from github_app.commands.audit import DATABASE_OPTION, open_engine
from github_app.views import STATES, age, deployment_detail, find_deployment, list_deployments


@click.group()
def deployments() -> None:
    """See what gonogo decided for each deployment, and what waits for a reviewer."""


@deployments.command("list")
@DATABASE_OPTION
@click.option("--state", type=click.Choice(STATES), default=None, help="Only deployments in this state.")
@click.option("--waiting", is_flag=True, help="Only escalated deployments still waiting for a reviewer.")
@click.option("--repo", "repository", default=None, help="owner/name")
@click.option("--environment", "-e", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_command(database_url: str | None, state: str | None, waiting: bool, repository: str | None,
                 environment: str | None, limit: int, fmt: str) -> None:  # fmt: skip
    """List the newest deployments: verdict, answer, risk, and who must decide an escalation."""
    if waiting:
        state = "escalated"
    engine = open_engine(database_url)
    try:
        rows = list_deployments(engine, state=state, repository=repository, environment=environment, limit=limit)
    finally:
        engine.dispose()
    if waiting:
        rows = [r for r in rows if r["answer"] is None]
    if fmt == "json":
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("No deployments." if not (state or repository or environment) else "No deployments match.")
        return
    now = datetime.now(UTC)
    click.echo(f"{'DEPLOYMENT':40}  {'SHA':7}  {'STATE':10}  {'VERDICT':8}  {'ANSWER':8}  {'RISK':>5}  {'SCORE':>5}  "
               f"{'AGE':>4}  WAITING ON / ERROR")  # fmt: skip
    for r in rows:
        name = f"{r['repository']}#{r['run_id']}/{r['environment']}"
        risk = f"{r['risk'] * 100:.0f}%" if r["risk"] is not None else ""
        score = f"{r['readiness_score']:.0f}" if r["readiness_score"] is not None else ""
        waiting_on = ", ".join(r["reviewers"]) if r["state"] == "escalated" and r["answer"] is None else ""
        if r["failure"]:
            waiting_on = f"{r['failure']['error'][:60]} (fix, then `{r['failure']['retry']}`)"
        click.echo(f"{name[:40]:40}  {r['sha'][:7]:7}  {r['state']:10}  {r['verdict'] or '':8}  {r['answer'] or '':8}  "
                   f"{risk:>5}  {score:>5}  {age(r['created_at'], now):>4}  {waiting_on}")  # fmt: skip


@deployments.command("show")
@DATABASE_OPTION
@click.argument("deployment")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="markdown: the check run's body, as published on GitHub.")  # fmt: skip
def show_command(database_url: str | None, deployment: str, fmt: str) -> None:
    """Show one deployment (its key, row id, or owner/name#run): the decision and why, reviews, outcomes."""
    from rules.report import check_run_markdown, render_text
    from rules.types import Decision

    engine = open_engine(database_url)
    try:
        row = find_deployment(engine, deployment)
        if row is None:
            raise click.ClickException(f"No deployment {deployment!r} found (see `gonogo deployments list`).")
        detail = deployment_detail(engine, row)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(detail, default=str, indent=2))
        return
    decision = Decision.model_validate(detail["decision"]) if detail["decision"] else None
    if fmt == "markdown":
        if decision is None:
            raise click.ClickException("This deployment has no decision yet.")
        click.echo(check_run_markdown(decision))
        return
    now = datetime.now(UTC)
    click.echo(f"{detail['repository']} run {detail['run_id']} to {detail['environment']} at {detail['sha'][:12]}"
               f"{' (' + detail['ref'] + ')' if detail['ref'] else ''}")  # fmt: skip
    answered = f", answered {age(detail['answered_at'], now)} ago" if detail["answered_at"] else ""
    click.echo(f"state {detail['state']}, answer {detail['answer'] or 'none yet'}{answered}; "
               f"requested {age(detail['created_at'], now)} ago by {detail['creator'] or 'unknown'}")  # fmt: skip
    click.echo("")
    if detail["failure"]:
        f = detail["failure"]
        click.echo(f"gonogo failed to evaluate this deployment and stopped trying (delivery {f['delivery_id']}):\n"
                   f"  {f['error']}\n"
                   f"GitHub keeps the deployment waiting. Fix the cause, then run `{f['retry']}`.")  # fmt: skip
    else:
        click.echo(render_text(decision) if decision is not None else "No decision recorded yet.")
    if detail["reviews"]:
        click.echo("Reviews:")
        for r in detail["reviews"]:
            verdict = "" if r["allowed"] else f" (refused: {r['refusal']})"
            click.echo(f"  {r['created_at']:%Y-%m-%d %H:%M} {r['actor']} {r['action']}{verdict}"
                       f"{': ' + r['reason'] if r['reason'] else ''}")  # fmt: skip
    if detail["outcomes"]:
        click.echo("Outcomes:")
        for o in detail["outcomes"]:
            what = (o["detail"] or {}).get("alertname") or (o["detail"] or {}).get("description") or ""
            click.echo(f"  {o['observed_at']:%Y-%m-%d %H:%M} {o['outcome']} ({o['source']}){' ' + what if what else ''}")
