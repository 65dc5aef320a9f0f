"""The ``gonogo`` command line."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # imported where used: `--help` and `policy validate` read no settings
    from github_app.settings import Settings

T = TypeVar("T")


def load_settings(require_github: bool = True) -> Settings:
    """Read settings or exit with the message that says what to set."""
    from github_app.settings import Settings, SettingsError

    try:
        return Settings.from_env(require_github=require_github)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _engine(settings: Settings) -> Any:
    from github_app.commands.audit import open_engine

    return open_engine(settings.database_url)


def _with_database(call: Callable[[Any], T], settings: Settings | None = None) -> T:
    """Run ``call`` with an engine on the configured database, and close it."""
    engine = _engine(settings or load_settings(require_github=False))
    try:
        return call(engine)
    finally:
        engine.dispose()


# Commands that live in their own modules: (module, attribute, first line of its help). They are imported
# only when run, so `gonogo --help` and light commands do not pay for pandas, scikit-learn or scipy.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "assess": ("github_app.commands.assess", "assess",
               "Decide go / escalate / no-go from a folder of validation outputs."),
    "audit": ("github_app.commands.audit", "audit", "Check and export the tamper-evident audit log."),
    "backfill": ("github_app.commands.history", "backfill",
                 "Read a repository's past deployments and statuses from GitHub into the history (safe to re-run)."),
    "demo": ("github_app.commands.demo", "demo",
             "Run gonogo end to end against the GitHub sandbox and show what it decided and why."),
    "deployments": ("github_app.commands.deployments", "deployments",
                    "See what gonogo decided for each deployment, and what waits for a reviewer."),
    "doctor": ("github_app.commands.doctor", "doctor",
               "Check settings, the GitHub App, its webhook and installations, and the database; say how to fix each ✗."),
    "history": ("github_app.commands.history", "history",
                "Export and import the deployment history the risk model learns from."),
    "model": ("github_app.commands.model", "model", "Train, evaluate and explain the deployment risk model."),
    "policy": ("github_app.commands.policy", "policy", "Work with the .github/gonogo.yml policy file."),
    "report": ("github_app.commands.report", "report",
               "Print how good the gate was and the DORA figures over a window (docs/insights.md defines them)."),
    "sandbox": ("github_app.commands.sandbox", "sandbox",
                "Serve a stand-in for GitHub's REST API, seeded from SCENARIO, until interrupted."),
    "setup": ("github_app.commands.setup", "setup",
              "Create the GitHub App from app.yml (GitHub's manifest flow) and save its credentials."),
    "waivers": ("github_app.commands.waivers", "waivers",
                "List, add and revoke waivers (a rule allowed to fail in one environment until a date)."),
}


class LazyGroup(click.Group):
    """A group whose LAZY_COMMANDS are imported when invoked, and listed in --help from their recorded help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            module, attribute, _ = LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                rows.append((name, click.Command(name, help=LAZY_COMMANDS[name][2]).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["json", "text"]))
def cli(log_level: str, log_format: str) -> None:
    """gonogo: go/no-go decisions for GitHub deployments."""
    from github_app import logs

    logs.configure(log_level, log_format)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="In-process workers; 0: webhook intake only (default: GONOGO_WORKERS or 2).")
def serve(host: str, port: int, workers: int | None) -> None:
    """Run the web app (webhook intake) with in-process workers."""
    import uvicorn

    from github_app.app import create_app
    from github_app.settings import SettingsError

    settings = load_settings()
    if settings.webhook_secret is None and host not in ("127.0.0.1", "localhost", "::1"):
        # GONOGO_DEMO checks no signature: anyone reaching the port could post deliveries, clicks and commands
        raise click.ClickException(f"GONOGO_DEMO=1 without GONOGO_WEBHOOK_SECRET checks no signatures: serve it on "
                                   f"127.0.0.1 only (not --host {host}), or set the webhook secret.")  # fmt: skip
    try:
        app = create_app(settings, workers=workers)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _reach_database(settings.database_url)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(1)


def _reach_database(url: str) -> None:
    """Connect once, so an unreachable database stops start-up with a message rather than the lifespan's traceback."""
    from sqlalchemy.exc import OperationalError

    from github_app import db

    engine = db.make_engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise click.ClickException(db.unreachable(url, exc)) from None
    finally:
        engine.dispose()


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Concurrent workers (default: GONOGO_WORKERS or 2).")
@click.option(
    "--until-idle", is_flag=True,
    help="Batch mode: process every due delivery, send due notifications, then exit.",
)  # fmt: skip
def worker(workers: int | None, until_idle: bool) -> None:
    """Run workers without the web server, for scaling out on PostgreSQL.

    Besides the workers, a worker process delivers queued notifications, sends escalation reminders
    and expires escalations, and prunes old finished deliveries (GONOGO_INBOX_RETENTION_DAYS), just
    as `gonogo serve` does when it has workers.
    """
    import asyncio  # here, not at the top: `gonogo --help` and light commands need no event loop

    settings = load_settings()
    count = workers or settings.workers
    if count < 1:  # a worker process without workers would start, and never process a delivery
        raise click.UsageError("GONOGO_WORKERS is 0: a worker process needs at least one; set it or pass --workers N.")
    asyncio.run(_run_workers(settings, count, until_idle))


async def _run_workers(settings: Settings, count: int, until_idle: bool) -> None:
    import asyncio
    import signal

    from sqlalchemy.exc import OperationalError

    from github_app import db
    from github_app.background import Background
    from github_app.features import default_router
    from github_app.routing import Context
    from github_app.services import default_services

    engine = db.make_engine(settings.database_url)
    try:
        if db.is_sqlite(engine):
            await asyncio.to_thread(db.upgrade, engine)
        elif not await asyncio.to_thread(db.is_current, engine):
            raise click.ClickException("The database schema is not current: run `gonogo db upgrade` first.")
    except OperationalError as exc:
        engine.dispose()
        raise click.ClickException(db.unreachable(settings.database_url, exc)) from None
    try:
        async with default_services(settings, engine) as services:
            background = Background(Context(settings, engine, services), default_router(), count)
            if until_idle:
                await background.run_until_idle(timeout=24 * 3600)
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            background.start()
            await stop.wait()
            await background.stop()
    finally:
        engine.dispose()


@cli.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database schema (GONOGO_DATABASE_URL)."""
    from sqlalchemy.exc import OperationalError

    from github_app import db

    settings = load_settings(require_github=False)
    engine = db.make_engine(settings.database_url)  # not _engine: that one refuses a schema behind the code
    try:
        db.upgrade(engine, revision)
        click.echo(f"Database {db.describe(settings.database_url)} is at revision {db.current_revision(engine)}.")
    except OperationalError as exc:
        raise click.ClickException(db.unreachable(settings.database_url, exc)) from None
    finally:
        engine.dispose()


@cli.group()
def deliveries() -> None:
    """Inspect and retry webhook deliveries in the inbox."""


@deliveries.command("list")
@click.option("--state", type=click.Choice(["pending", "processing", "done", "dead", "ignored"]))
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]), show_default=True)
def deliveries_list(state: str | None, limit: int, fmt: str) -> None:
    """List the newest deliveries."""
    from github_app import inbox

    rows = _with_database(lambda engine: inbox.list_deliveries(engine, state, limit))
    if fmt == "json":
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("No deliveries." if not state else f"No {state} deliveries.")
        return
    click.echo(f"{'ID':>6}  {'DELIVERY':38}  {'EVENT':32}  {'STATE':10}  {'TRIES':>5}  LAST ERROR")
    for r in rows:
        name = r["event"] + (f".{r['action']}" if r["action"] else "")
        err = (r["last_error"] or "").splitlines()[0][:80] if r["last_error"] else ""
        click.echo(f"{r['id']:>6}  {r['delivery_id'][:38]:38}  {name[:32]:32}  {r['state']:10}  {r['attempts']:>5}  {err}")


@deliveries.command("retry")
@click.argument("delivery")
def deliveries_retry(delivery: str) -> None:
    """Queue DELIVERY (delivery id or row id) for processing again."""
    from github_app import inbox

    ok = _with_database(lambda engine: inbox.retry_delivery(engine, delivery))
    if not ok:
        raise click.ClickException(f"No finished delivery {delivery!r} found (see `gonogo deliveries list`).")
    click.echo(f"Delivery {delivery} queued for retry.")


@deliveries.command("show")
@click.argument("delivery")
@click.option("--payload/--no-payload", default=True, show_default=True, help="Print the webhook body too.")
def deliveries_show(delivery: str, payload: bool) -> None:
    """Show one delivery (delivery id or row id): its state, last error and webhook body."""
    from github_app import inbox

    row = _with_database(lambda engine: inbox.get_delivery(engine, delivery))
    if row is None:
        raise click.ClickException(f"No delivery {delivery!r} found (see `gonogo deliveries list`).")
    name = row["event"] + (f".{row['action']}" if row["action"] else "")
    click.echo(f"delivery {row['delivery_id']} (row {row['id']}): {name}, installation {row['installation_id']}")
    click.echo(f"state {row['state']} after {row['attempts']} attempt(s); received {row['received_at']:%Y-%m-%d %H:%M:%S} UTC"
               + (f", done {row['completed_at']:%Y-%m-%d %H:%M:%S} UTC" if row["completed_at"] else ""))  # fmt: skip
    if row["last_error"]:
        click.echo(f"last error:\n{row['last_error']}")
    if payload:
        try:
            click.echo(json.dumps(json.loads(row["payload"]), indent=2, ensure_ascii=False))
        except ValueError:
            click.echo(row["payload"])


@deliveries.command("prune")
@click.option(
    "--older-than", "older_than", default=None, metavar="AGE",
    help="Age like 30d, 12h or 2w (default: GONOGO_INBOX_RETENTION_DAYS days, 30).",
)  # fmt: skip
@click.option(
    "--state", "states", multiple=True, type=click.Choice(["done", "ignored", "dead"]),
    help="States to prune; repeat for several (default: done and ignored; dead ones stay for a person to see).",
)  # fmt: skip
def deliveries_prune(older_than: str | None, states: tuple[str, ...]) -> None:
    """Delete finished deliveries received longer ago than AGE.

    Pending and processing deliveries are never pruned. A running `gonogo serve` (with workers) or
    `gonogo worker` prunes done and ignored deliveries by itself once an hour.
    """
    from datetime import UTC, datetime, timedelta

    from tqdm import tqdm

    from github_app import inbox
    from rules.policy import format_duration, parse_duration

    settings = load_settings(require_github=False)
    if older_than is None:
        if not settings.inbox_retention_days:
            raise click.UsageError("GONOGO_INBOX_RETENTION_DAYS is 0 (keep everything): say how old with --older-than.")
        age = timedelta(days=settings.inbox_retention_days)
    else:
        try:
            age = parse_duration(older_than)
            datetime.now(UTC) - age  # an age reaching back before year 1 raises here, not in the pruning
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
        except OverflowError:
            raise click.BadParameter(f"{older_than} reaches back before the calendar begins", param_hint="--older-than") from None
    chosen = states or ("done", "ignored")
    with tqdm(desc="pruning deliveries", unit=" rows", disable=None, leave=False, file=sys.stderr) as bar:
        pruned = _with_database(
            lambda engine: inbox.prune_deliveries(engine, age, chosen, progress=lambda n: bar.update(n - bar.n)),
            settings,
        )
    click.echo(f"Pruned {pruned} {'/'.join(chosen)} deliver{'y' if pruned == 1 else 'ies'} received more than "
               f"{format_duration(age)} ago.")  # fmt: skip


@cli.command()
@click.option("-e", "--event", required=True, help="Event name, as in the X-GitHub-Event header.")
@click.option("-p", "--payload", "payload_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="http://127.0.0.1:8000/webhooks/github", show_default=True)
@click.option("--delivery-id", default=None, help="Default: a new random id.")
def receive(event: str, payload_file: Path, url: str, delivery_id: str | None) -> None:
    """Sign a payload file with GONOGO_WEBHOOK_SECRET and POST it to a running app."""
    import uuid

    import httpx

    from github_app.webhooks import signature_for

    settings = load_settings(require_github=False)
    if settings.webhook_secret is None:
        raise click.ClickException("GONOGO_WEBHOOK_SECRET is not set: it is needed to sign the payload.")
    body = payload_file.read_bytes()
    try:
        json.loads(body)
    except ValueError as exc:
        raise click.ClickException(f"{payload_file} is not valid JSON: {exc}") from None
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature_for(settings.webhook_secret.reveal(), body),
        "User-Agent": "GitHub-Hookshot/gonogo-receive",
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"Could not reach {url}: {exc}. Is `gonogo serve` running?") from None
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code >= 300:
        sys.exit(1)




def main() -> None:
    """Run the command line as the `gonogo` program, then let the interpreter exit without a final sweep."""
    try:
        cli(prog_name="gonogo")
    finally:
        # At exit the interpreter runs full garbage collections over every object still alive: 0.3-0.5 s
        # of CPU after `model explain` (pandas, scikit-learn), 0.03 s after `policy validate`. Frozen
        # objects are left to the operating system instead. Commands close their files and database
        # connections themselves; atexit handlers (logging's flush) and the final flush of stdout still run.
        gc.freeze()
