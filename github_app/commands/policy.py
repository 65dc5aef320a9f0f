"""`gonogo policy`: print the JSON Schema, validate a policy file, explain the effective policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from rules.policy import (
    MAX_POLICY_BYTES,
    PolicyError,
    PolicyIssue,
    default_policy,
    effective,
    json_schema,
    load_policy_text,
)

DEFAULT_FILE = Path(".github/gonogo.yml")


def read_policy(path: Path) -> str:
    """The text of a policy file; PolicyError when GitHub would not send it to gonogo (over 1 MB)."""
    size = path.stat().st_size
    if size > MAX_POLICY_BYTES:  # the app would escalate every deployment; parsing it would also take minutes
        raise PolicyError([PolicyIssue(str(path), None, None, "", (
            f"the file is over 1 MB ({size:,} bytes), which GitHub's contents API does not send, so gonogo would "
            "escalate every deployment; keep the policy under 1 MB"))])  # fmt: skip
    return path.read_text(encoding="utf-8")


def _read(path: Path) -> str:
    try:
        return read_policy(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"cannot read {path}: {exc}") from None


@click.group()
def policy() -> None:
    """Work with the .github/gonogo.yml policy file."""


@policy.command()
def schema() -> None:
    """Print the policy file's JSON Schema (for editor completion and CI)."""
    click.echo(json.dumps(json_schema(), indent=2, sort_keys=False))


@policy.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--org", "org_file", type=click.Path(dir_okay=False, path_type=Path), help="Organisation defaults file.")
def validate(file: Path, org_file: Path | None) -> None:
    """Validate FILE; print every error with its line and column and exit 1 if there is any."""
    try:
        load_policy_text(
            _read(file), source=str(file), org_text=_read(org_file) if org_file else None,
            org_source=str(org_file) if org_file else "org defaults",
        )  # fmt: skip
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        click.echo(f"{len(exc.errors)} error(s) in {file}", err=True)
        sys.exit(1)
    click.echo(f"{file}: valid")


@policy.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--environment", "-e", required=True, help="Environment name as in GitHub.")
@click.option("--org", "org_file", type=click.Path(dir_okay=False, path_type=Path), help="Organisation defaults file.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def explain(file: Path | None, environment: str, org_file: Path | None, fmt: str) -> None:
    """Print the effective policy for an environment (FILE defaults to .github/gonogo.yml, else the default pack)."""
    if file is None and DEFAULT_FILE.is_file():
        file = DEFAULT_FILE
    try:
        if file is None and org_file is None:
            pol = default_policy()
        else:
            pol = load_policy_text(
                _read(file) if file else None, source=str(file), org_text=_read(org_file) if org_file else None,
                org_source=str(org_file) if org_file else "org defaults",
            )  # fmt: skip
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        sys.exit(1)
    env = effective(pol, environment)
    data = {
        "environment": environment, "sources": pol.sources, "extends": pol.extends, "mode": pol.mode,
        "artifacts": pol.artifacts, "migrations": pol.migrations, **env.model_dump(mode="json", exclude_none=True),
    }  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
