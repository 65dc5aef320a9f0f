"""`gonogo history export|import` and `gonogo backfill`: move deployment history in and out of the database."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pandas as pd
from sqlalchemy import Engine, select, update
from tqdm import tqdm

from github_app import db
from github_app.commands.audit import open_engine, parse_when
from github_app.db.models import Deployment, HistoryRow
from github_app.features.outcomes import STATE_TO_OUTCOME
from scorer.evidence import HISTORY_COLUMNS, change_directories, change_entropy, is_fix_message
from scorer.risk.history import (
    INT_COLUMNS,
    HistoryError,
    coerce_history,
    missing_outcome_times,
    read_history_file,
    validate_history,
)

log = logging.getLogger(__name__)

DATABASE_OPTION = click.option(
    "--database-url", envvar="GONOGO_DATABASE_URL", default=None,
    help="Database (default: GONOGO_DATABASE_URL, else the local SQLite file).",
)  # fmt: skip
_ROW = re.compile(r"^row (\d+)\b")


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """Values of one ``history`` table row from a typed history record."""
    from github_app.risk_registry import history_features

    created = pd.Timestamp(row["created_at"]).to_pydatetime()
    outcome = row.get("outcome") or None
    known = row.get("outcome_at")
    # Without the time an outcome became known it stays a training label but feeds no history feature.
    outcome_at = pd.Timestamp(known).to_pydatetime() if outcome and known is not None and not pd.isna(known) else None
    return {
        "deployment_id": str(row["deployment_id"]), "repository": str(row["repository"]),
        "environment": str(row["environment"]), "sha": str(row.get("sha") or ""), "created_at": created,
        "outcome": outcome, "outcome_at": outcome_at, "features": history_features(row),
    }  # fmt: skip


def upsert_history(engine: Engine, frame: pd.DataFrame) -> tuple[int, int]:
    """Insert or replace history rows by deployment_id; return (new, updated)."""
    records = [_record(r) for r in frame.to_dict("records")]
    ids = [r["deployment_id"] for r in records]
    insert = db.insert_for(engine)
    with engine.begin() as conn:
        existing: set[str] = set()
        for start in range(0, len(ids), 500):
            existing.update(conn.execute(
                select(HistoryRow.deployment_id).where(HistoryRow.deployment_id.in_(ids[start:start + 500]))
            ).scalars())  # fmt: skip
        for start in range(0, len(records), 500):
            chunk = records[start:start + 500]
            stmt = insert(HistoryRow).values(chunk)
            stmt = stmt.on_conflict_do_update(index_elements=["deployment_id"], set_={
                c: stmt.excluded[c] for c in ("repository", "environment", "sha", "created_at", "outcome",
                                              "outcome_at", "features")
            })  # fmt: skip
            conn.execute(stmt)
    return len(set(ids) - existing), len(set(ids) & existing)


def export_frame(engine: Engine, repository: str | None = None) -> pd.DataFrame:
    """The history table as a docs/history.md frame with readable dtypes (whole numbers, booleans)."""
    from github_app.risk_registry import load_history_frame

    frame = load_history_frame(engine, repository)
    for col in INT_COLUMNS:
        frame[col] = frame[col].round().astype("Int64")
    frame["has_migration"] = frame["has_migration"].map(lambda v: pd.NA if pd.isna(v) else bool(v)).astype("boolean")
    return frame[list(HISTORY_COLUMNS)]


@click.group()
def history() -> None:
    """Export and import the deployment history the risk model learns from."""


@history.command("export")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Destination file: .csv or .parquet.")
@click.option("--repo", "repository", default=None, help="Only this repository (owner/name).")
@DATABASE_OPTION
def export_command(output: Path, repository: str | None, database_url: str | None) -> None:
    """Write the history table with exactly the columns of docs/history.md (outcome included)."""
    suffix = output.suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise click.BadParameter(f"{output.name}: use a .csv or .parquet file name", param_hint="--output")
    engine = open_engine(database_url)
    try:
        frame = export_frame(engine, repository)
    finally:
        engine.dispose()
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        out = frame.copy()
        for col in ("created_at", "outcome_at"):
            out[col] = out[col].map(lambda t: "" if pd.isna(t) else t.isoformat().replace("+00:00", "Z"))
        out.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    click.echo(f"exported {len(frame)} deployments to {output}")


@history.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@DATABASE_OPTION
def import_command(file: Path, database_url: str | None) -> None:
    """Validate a CSV or Parquet history and upsert its valid rows by deployment_id."""
    try:
        raw = read_history_file(file)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    errors = validate_history(raw)
    bad_rows = {int(m.group(1)) for e in errors if (m := _ROW.match(e))}
    general = [e for e in errors if not _ROW.match(e)]
    for message in errors:
        click.echo(f"{file}: {message}", err=True)
    if general:
        raise click.ClickException(f"nothing imported from {file}: fix the problems above")
    keep = [i for i in range(len(raw)) if i + 2 not in bad_rows]  # row numbers count the header as row 1
    if not keep:
        raise click.ClickException(f"nothing imported from {file}: every row has an error")
    good = coerce_history(raw.iloc[keep].reset_index(drop=True))
    untimed = missing_outcome_times(good)
    engine = open_engine(database_url)
    try:
        new, updated = upsert_history(engine, good)
    finally:
        engine.dispose()
    log.info("history.imported", extra={"file": str(file), "new": new, "updated": updated, "rejected": len(bad_rows),
                                        "outcomes_without_time": untimed})  # fmt: skip
    click.echo(f"imported {len(good)} rows from {file}: {new} new, {updated} updated, {len(bad_rows)} rejected")
    if untimed:
        click.echo(f"{untimed} rows have an outcome but no outcome_at: they are training labels, but no later "
                   "deployment's history features use them; fill outcome_at (when the outcome became known) "
                   "to let them count")


# ------------------------------------------------------------------------------------------ backfill

@dataclass
class BackfillReport:
    """What a backfill read and wrote."""

    repository: str
    installation_id: int
    deployments: int = 0
    new_rows: int = 0
    updated_rows: int = 0
    already_gated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class _Dep:
    id: int
    sha: str
    environment: str
    created_at: datetime
    outcome: str | None
    outcome_at: datetime | None


def _time(value: Any) -> datetime:
    from github_app.github import parse_time

    when = parse_time(value)
    assert when is not None
    return when.astimezone(UTC)


async def _installation_for(clients: Any, owner: str, name: str) -> int:
    from github_app.github import call

    resp = await call(clients.app().rest.apps.async_get_repo_installation(owner, name))
    return int(resp.parsed_data.id)


async def _outcome(gh: Any, owner: str, name: str, dep_id: int) -> tuple[str | None, datetime | None, int | None]:
    """Outcome from the deployment's latest finished status (success, or failure/error)."""
    from github_app.github import call

    resp = await call(gh.rest.repos.async_list_deployment_statuses(owner, name, dep_id, per_page=100))
    statuses = sorted(resp.parsed_data, key=lambda s: (_time(s.created_at), s.id), reverse=True)
    for status in statuses:  # newest first; "inactive" only means a later deployment replaced it
        outcome = STATE_TO_OUTCOME.get(str(status.state))
        if outcome:
            return outcome, _time(status.created_at), int(status.id)
    return None, None, None


async def _change(gh: Any, owner: str, name: str, base: str, head: str) -> dict[str, Any]:
    """Change-size columns from the compare API between two deployed shas (empty when it cannot say)."""
    from github_app.github import GitHubError, call
    from rules.policy import DEFAULT_MIGRATIONS

    if base == head:
        return {"commits": 0, "files_changed": 0, "additions": 0, "deletions": 0, "subsystems": 0, "entropy": 0.0,
                "authors": 0, "has_migration": False, "directories": 0, "fix_commits": 0}  # fmt: skip
    try:
        resp = await call(gh.rest.repos.async_compare_commits(owner, name, f"{base}...{head}", per_page=100))
    except GitHubError as exc:  # force-pushed or unrelated history: leave the change unknown
        log.info("backfill.compare_failed", extra={"base": base[:7], "head": head[:7], "error": str(exc)})
        return {}
    cmp = resp.parsed_data
    files = list(cmp.files or [])
    paths = [f.filename for f in files]
    authors = {(c.author.login if c.author else (c.commit.author.name if c.commit.author else None))
               for c in cmp.commits} - {None}  # fmt: skip
    import fnmatch
    from pathlib import PurePosixPath

    return {
        "commits": cmp.total_commits, "files_changed": len(files), "additions": sum(f.additions for f in files),
        "deletions": sum(f.deletions for f in files),
        "subsystems": len({p.split("/", 1)[0] if "/" in p else "." for p in paths}),
        "entropy": round(change_entropy([f.additions + f.deletions for f in files]), 4), "authors": len(authors),
        "directories": change_directories(paths),
        "fix_commits": sum(is_fix_message(c.commit.message) for c in cmp.commits),
        "has_migration": any(PurePosixPath(p).match(g) or fnmatch.fnmatchcase(p, g)
                             for p in paths for g in DEFAULT_MIGRATIONS),
    }  # fmt: skip


def _operational(dep: _Dep, earlier: list[_Dep]) -> dict[str, Any]:
    """Time and environment columns from the same environment's earlier deployments only."""
    out: dict[str, Any] = {"hour_utc": dep.created_at.hour, "weekday": dep.created_at.weekday()}
    if earlier:
        out["hours_since_last_deploy"] = (dep.created_at - earlier[-1].created_at).total_seconds() / 3600
    out["deploys_last_24h"] = sum(1 for e in earlier if e.created_at >= dep.created_at - timedelta(hours=24))
    known = [e for e in earlier if e.outcome and e.outcome_at and e.outcome_at < dep.created_at
             and e.created_at >= dep.created_at - timedelta(days=30)]  # fmt: skip
    if known:
        out["env_failure_rate_30d"] = sum(e.outcome != "success" for e in known) / len(known)
    return out


async def backfill_repository(clients: Any, engine: Engine, repository: str, *, since: datetime | None = None,
                              installation_id: int | None = None, compare: bool = True,
                              progress: bool = True) -> BackfillReport:
    """Read past deployments and their statuses from GitHub into history rows and outcomes (idempotent)."""
    from github_app.features.outcomes import record_outcome
    from github_app.github import paginate

    owner, name = repository.split("/", 1)
    if installation_id is None:
        installation_id = await _installation_for(clients, owner, name)
    gh = clients.installation(installation_id)
    everything: list[Any] = await paginate(gh, gh.rest.repos.async_list_deployments, owner=owner, repo=name)
    listed = [d for d in everything if since is None or _time(d.created_at) >= since]
    listed.sort(key=lambda d: (_time(d.created_at), d.id))
    report = BackfillReport(repository=repository, installation_id=installation_id, deployments=len(listed))
    gated = await asyncio.to_thread(_gated_ids, engine, repository)
    by_env: dict[str, list[_Dep]] = {}
    with tqdm(total=len(listed), desc=f"backfill {repository}", unit="deployment", file=sys.stderr,
              disable=not progress) as bar:  # fmt: skip
        for d in listed:
            outcome, outcome_at, status_id = await _outcome(gh, owner, name, d.id)
            dep = _Dep(id=d.id, sha=d.sha, environment=d.environment, created_at=_time(d.created_at),
                       outcome=outcome, outcome_at=outcome_at)
            earlier = by_env.setdefault(dep.environment, [])
            if d.id in gated:
                report.already_gated += 1  # the gate wrote this deployment's history row itself
            else:
                row: dict[str, Any] = {c: None for c in HISTORY_COLUMNS}
                row.update(deployment_id=f"github:{repository}:{d.id}", repository=repository,
                           environment=dep.environment, sha=dep.sha, created_at=dep.created_at, outcome=outcome)
                if compare and earlier:
                    row.update(await _change(gh, owner, name, earlier[-1].sha, dep.sha))
                row.update(_operational(dep, earlier))
                new = await asyncio.to_thread(_write_row, engine, row, outcome_at)
                report.new_rows += new == "new"
                report.updated_rows += new == "updated"
                if outcome and outcome_at:
                    await asyncio.to_thread(
                        record_outcome, engine, repository=repository, environment=dep.environment, sha=dep.sha,
                        outcome=outcome, source="backfill",
                        # the webhook handler's key: a status seen both ways is one outcome
                        source_key=f"deployment_status:{status_id}",
                        observed_at=outcome_at, detail={"deployment_id": d.id},
                    )  # fmt: skip
                    report.outcomes[outcome] += 1
            earlier.append(dep)
            bar.update(1)
    log.info("backfill.done", extra={"repository": repository, "deployments": report.deployments,
                                     "new": report.new_rows, "updated": report.updated_rows})  # fmt: skip
    return report


def _gated_ids(engine: Engine, repository: str) -> set[int]:
    with engine.connect() as conn:
        ids = conn.execute(
            select(Deployment.github_deployment_id).where(
                Deployment.repository == repository, Deployment.github_deployment_id.is_not(None))
        ).scalars()  # fmt: skip
        return {int(v) for v in ids if v is not None}


def _write_row(engine: Engine, row: dict[str, Any], outcome_at: datetime | None) -> str:
    """Insert a backfilled row once; later runs only fill in an outcome that arrived since. Returns what changed."""
    values = _record(row)
    values["outcome_at"] = outcome_at
    with engine.begin() as conn:
        inserted = conn.execute(
            db.insert_for(engine)(HistoryRow).values(values).on_conflict_do_nothing(index_elements=["deployment_id"])
            .returning(HistoryRow.id)
        ).first()  # fmt: skip
        if inserted is not None:
            return "new"
        if values["outcome"] is None:
            return "same"
        changed = conn.execute(
            update(HistoryRow).where(HistoryRow.deployment_id == values["deployment_id"],
                                     HistoryRow.outcome.is_(None))
            .values(outcome=values["outcome"], outcome_at=outcome_at)
        ).rowcount  # fmt: skip
    return "updated" if changed else "same"


def _backfill_settings() -> Any:
    from github_app.settings import Settings, SettingsError

    env = dict(os.environ)
    # backfill only calls GitHub; it never receives webhooks, so the webhook secret is not needed here
    env.setdefault("GONOGO_WEBHOOK_SECRET", "not-used-by-backfill")
    try:
        return Settings.from_env(env, require_github=True)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _parse_since(value: str | None) -> datetime | None:
    return None if value is None else parse_when(value)


@click.command()
@click.option("--repo", "repository", required=True, help="owner/name")
@click.option("--since", default=None, help="Only deployments created on or after this date (ISO 8601, UTC).")
@click.option("--installation", "installation_id", type=int, default=None,
              help="Installation id (default: looked up for the repository as the app).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Fill change-size columns by comparing consecutive deployments of an environment.")
@DATABASE_OPTION
def backfill(repository: str, since: str | None, installation_id: int | None, compare: bool,
             database_url: str | None) -> None:
    """Read a repository's past deployments and statuses from GitHub into the history (safe to re-run)."""
    from github_app.github import GitHubClients, GitHubError

    if repository.count("/") != 1 or not all(repository.split("/")):
        raise click.BadParameter(f"{repository!r}: write the repository as owner/name", param_hint="--repo")
    settings = _backfill_settings()
    when = _parse_since(since)
    engine = open_engine(database_url or settings.database_url)
    clients = GitHubClients(settings)

    async def run() -> BackfillReport:
        try:
            return await backfill_repository(clients, engine, repository, since=when, installation_id=installation_id,
                                             compare=compare)
        finally:
            await clients.aclose()

    try:
        report = asyncio.run(run())
    except GitHubError as exc:
        raise click.ClickException(f"GitHub refused the backfill of {repository}: {exc}") from None
    finally:
        engine.dispose()
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "no outcomes"
    click.echo(f"backfilled {repository} (installation {report.installation_id}): {report.deployments} deployments, "
               f"{report.new_rows} new rows, {report.updated_rows} updated, {report.already_gated} already gated; "
               f"{outcomes}")


__all__ = ["BackfillReport", "backfill", "backfill_repository", "export_frame", "history", "open_engine",
           "upsert_history"]  # fmt: skip
