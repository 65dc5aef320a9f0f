"""`gonogo waivers list|add|revoke`: see and manage the waivers the gate applies."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import click

from github_app.commands.audit import DATABASE_OPTION, open_engine
from github_app.db.models import Waiver as WaiverRow


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in minimal containers
        return "cli"


def _status(row: WaiverRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return f"revoked by {row.revoked_by}"
    return "active" if row.expires_at > now else "expired"


@click.group()
def waivers() -> None:
    """List, add and revoke waivers (a rule allowed to fail in one environment until a date)."""


@waivers.command("list")
@DATABASE_OPTION
@click.option("--repo", "repository", default=None, help="owner/name")
@click.option("--environment", "-e", default=None)
@click.option("--all", "show_all", is_flag=True, help="Include expired and revoked waivers.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_command(database_url: str | None, repository: str | None, environment: str | None, show_all: bool,
                 fmt: str) -> None:  # fmt: skip
    """List active waivers (newest first), or all of them with --all."""
    from github_app.waivers import list_waivers

    now = datetime.now(UTC)
    engine = open_engine(database_url)
    try:
        rows = list_waivers(engine, repository=repository, environment=environment, include_inactive=show_all, now=now)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps([
            {"id": r.id, "repository": r.repository, "environment": r.environment, "rule_id": r.rule_id, "sha": r.sha,
             "expires_at": r.expires_at.isoformat(), "reason": r.reason, "author": r.author,
             "created_at": r.created_at.isoformat(), "status": _status(r, now),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None, "revoked_by": r.revoked_by}
            for r in rows
        ], indent=2))  # fmt: skip
        return
    if not rows:
        click.echo("No waivers." if show_all else "No active waivers (use --all to include expired and revoked ones).")
        return
    click.echo(f"{'ID':>5}  {'REPOSITORY':30}  {'ENVIRONMENT':14}  {'RULE':12}  {'SHA':8}  {'EXPIRES (UTC)':16}  "
               f"{'STATUS':18}  {'AUTHOR':14}  REASON")  # fmt: skip
    for r in rows:
        click.echo(
            f"{r.id:>5}  {r.repository[:30]:30}  {r.environment[:14]:14}  {r.rule_id:12}  {(r.sha or 'any')[:8]:8}  "
            f"{r.expires_at:%Y-%m-%d %H:%M}  {_status(r, now)[:18]:18}  {r.author[:14]:14}  {r.reason[:60]}"
        )


def _owner_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    owner, slash, name = value.strip().partition("/")
    if not (owner and slash and name) or "/" in name:  # a waiver for "shop" would match no deployment
        raise click.BadParameter(f"{value!r} is not owner/name, e.g. acme/shop")
    return value.strip()


@waivers.command("add")
@DATABASE_OPTION
@click.option("--repo", "repository", required=True, callback=_owner_name, help="owner/name")
@click.option("--environment", "-e", required=True, help='Environment name, or "*" for every environment.')
@click.option("--rule", "rule_id", required=True, help="Rule id, e.g. GNG-SEC-001.")
@click.option("--until", "until", required=True, help="End date (through that day, UTC) or ISO date-time.")
@click.option("--reason", required=True)
@click.option("--sha", default=None, help="Only this commit (full sha).")
@click.option("--by", "author", default=None, help="Who grants it (default: cli:<login>).")
def add_command(database_url: str | None, repository: str, environment: str, rule_id: str, until: str, reason: str,
                sha: str | None, author: str | None) -> None:  # fmt: skip
    """Grant a waiver from the command line (recorded in the audit log like a PR command)."""
    from sqlalchemy.orm import Session

    from github_app.waivers import CommandError, WaiverError, add_waiver, parse_until

    now = datetime.now(UTC)
    try:
        expires = parse_until(until, now)
    except CommandError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    engine = open_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            row = add_waiver(session, repository, environment, rule_id.upper(), sha, expires, reason,
                             author or _default_actor(), now=now)  # fmt: skip
            waiver_id = row.id
    except WaiverError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"Waiver {waiver_id} added: {rule_id.upper()} in {repository} {environment} until {expires:%Y-%m-%d %H:%M} UTC.")


@waivers.command("revoke")
@DATABASE_OPTION
@click.argument("waiver_id", type=int)
@click.option("--by", "by", default=None, help="Who revokes it (default: cli:<login>).")
def revoke_command(database_url: str | None, waiver_id: int, by: str | None) -> None:
    """Revoke waiver WAIVER_ID: it stops applying to the next decision."""
    from github_app.waivers import WaiverError, revoke

    engine = open_engine(database_url)
    try:
        row = revoke(engine, waiver_id, by=by or _default_actor())
    except WaiverError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"Waiver {waiver_id} ({row.rule_id} in {row.repository} {row.environment}) revoked by {row.revoked_by}.")
