"""`gonogo audit verify|export`: check the hash chain of the audit log and hand it to auditors."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import click

DATABASE_OPTION = click.option(
    "--database-url", envvar="GONOGO_DATABASE_URL", default=None,
    help="Database to read (default: GONOGO_DATABASE_URL, else the local SQLite file).",
)  # fmt: skip


def open_engine(database_url: str | None) -> Any:
    """Open the database the CLI was pointed at, without needing the GitHub App's secrets."""
    from github_app import db
    from github_app.settings import SettingsError, check_database_url, default_database_url

    try:
        url = check_database_url(database_url, "--database-url (or GONOGO_DATABASE_URL)") if database_url else None
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    from sqlalchemy.exc import OperationalError

    url = url or default_database_url()
    engine = db.make_engine(url)
    try:
        if db.is_sqlite(engine):
            db.upgrade(engine)  # the embedded database creates and upgrades itself, as `gonogo serve` does
        elif not db.is_current(engine):
            engine.dispose()
            raise click.ClickException("The database schema is not current: run `gonogo db upgrade` first.")
    except OperationalError as exc:
        engine.dispose()
        raise click.ClickException(db.unreachable(url, exc)) from None
    return engine


def parse_when(value: str) -> datetime:
    """Read a date (2026-01-31) or ISO 8601 date-time; a value without a zone is UTC."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: write 2026-01-31 or 2026-01-31T09:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _anchor(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter(f"{value!r} is not SEQ:HASH as printed by a previous `gonogo audit verify`")
    return int(seq), digest.lower()


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a file `gonogo audit export` wrote; ClickException for anything else, which is never intact."""
    from github_app.audit import EXPORT_FIELDS

    try:
        with path.open(encoding="utf-8", newline="") as fh:
            first = fh.readline()
            fh.seek(0)
            if first.startswith("{"):
                for number, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rec = json.loads(line)
                        except ValueError as exc:
                            raise click.ClickException(f"{path}:{number} is not a JSON line: {exc}") from None
                        missing = [f for f in EXPORT_FIELDS if f not in rec] if isinstance(rec, dict) else EXPORT_FIELDS
                        if missing:
                            raise click.ClickException(f"{path}:{number} lacks {', '.join(missing)}: it is not an "
                                                       "entry `gonogo audit export` writes")  # fmt: skip
                        yield rec
                return
            reader = csv.DictReader(fh)
            if first.strip() and tuple(reader.fieldnames or ()) != EXPORT_FIELDS:  # a CSV export starts with them
                raise click.ClickException(f"{path} is neither JSON lines nor the CSV `gonogo audit export` writes "
                                           f"(whose header is {','.join(EXPORT_FIELDS)})")  # fmt: skip
            for number, rec in enumerate(reader, 2):
                try:
                    data = json.loads(rec["data"])
                except (TypeError, ValueError):
                    raise click.ClickException(f"{path}:{number}: the data column is not JSON") from None
                yield {**rec, "data": data, **{k: rec[k] or None for k in ("repository", "deployment_key", "actor")}}
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text, so not a file `gonogo audit export` writes") from None


@click.group()
def audit() -> None:
    """Check and export the tamper-evident audit log."""


@audit.command()
@DATABASE_OPTION
@click.option("--expect-head", default=None, metavar="SEQ:HASH",
              help="An anchor printed by an earlier verify; detects entries removed from the end.")  # fmt: skip
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Verify an exported file (jsonl or csv) instead of the database.")  # fmt: skip
def verify(database_url: str | None, expect_head: str | None, file: Path | None) -> None:
    """Recompute the hash chain; exit 0 if intact, 1 naming the first altered, missing or reordered entry."""
    from github_app import audit as audit_log

    anchor = _anchor(expect_head)
    if file is not None:
        try:
            report = audit_log.verify_records(_read_export(file))
        except (TypeError, ValueError) as exc:  # a seq or time that does not parse: not what export wrote
            raise click.ClickException(f"{file}: an entry is malformed ({exc}), so the export is not intact") from None
    else:
        engine = open_engine(database_url)
        try:
            report = audit_log.verify(engine, expect_head=anchor)
        finally:
            engine.dispose()
    if report.ok:
        click.echo(report.summary())
        if report.head_seq is not None:
            click.echo(f"Anchor for the next check: --expect-head {report.head_seq}:{report.head_hash}")
        return
    click.echo(report.summary(), err=True)
    sys.exit(1)


@audit.command()
@DATABASE_OPTION
@click.option("--since", default=None, help="Only entries created at or after this date (UTC unless a zone is given).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")  # fmt: skip
def export(database_url: str | None, since: str | None, fmt: str, output: Path | None) -> None:
    """Export audit entries for auditors, each with its hash and the previous entry's hash."""
    from github_app import audit as audit_log

    when = parse_when(since) if since else None
    form = cast(Literal["jsonl", "csv"], fmt)
    engine = open_engine(database_url)
    try:
        if output is None:
            count = audit_log.export(engine, when, form, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                count = audit_log.export(engine, when, form, fh)
    finally:
        engine.dispose()
    if output is not None:
        click.echo(f"Wrote {count} audit entries to {output}.", err=True)
