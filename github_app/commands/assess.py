"""`gonogo assess`: the same parsers, rules and decision on a folder of CI outputs, without GitHub."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from github_app.commands.policy import read_policy
from rules.pipeline import OFFLINE_SCOPE, evaluate, evidence_from_artifacts
from rules.policy import PolicyError, default_policy, load_policy_text
from rules.report import check_run_markdown, render_text
from scorer.parsers import ArtifactRejected, iter_dir_files, parse_artifacts

EXIT_GO, EXIT_NO_GO, EXIT_BAD_INPUT, EXIT_ESCALATE = 0, 1, 2, 3
_EXIT = {"approve": EXIT_GO, "reject": EXIT_NO_GO, "escalate": EXIT_ESCALATE}
DEFAULT_POLICY = Path(".github/gonogo.yml")


def _when(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time, e.g. 2025-06-04T10:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command()
@click.option("--artifacts", "artifacts_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of test, coverage, SARIF/Trivy and load-test outputs (zip files are opened).")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Policy file (default: .github/gonogo.yml if present, else the default pack).")
@click.option("--environment", "-e", default="production", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--repository", default="local/repository", show_default=True, help="owner/name, for the report.")
@click.option("--sha", default="0" * 40, help="Commit being assessed, for the report and sha-bound waivers.")
@click.option("--now", "now_text", default=None, help="Decision time (ISO 8601) for freeze windows; default now.")
def assess(artifacts_dir: Path, policy_file: Path | None, environment: str, fmt: str, repository: str, sha: str,
           now_text: str | None) -> None:  # fmt: skip
    """Decide go / escalate / no-go from a folder of validation outputs.

    Exit code: 0 go (or approved in dry-run), 3 escalate, 1 no-go, 2 bad usage or input.
    """
    now = _when(now_text)
    if policy_file is None and DEFAULT_POLICY.is_file():
        policy_file = DEFAULT_POLICY
    try:
        policy = load_policy_text(read_policy(policy_file), source=str(policy_file)) if policy_file else default_policy()
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        click.echo("The policy is invalid; gonogo would escalate every deployment. Fix it and re-run.", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"Cannot read the policy file {policy_file}: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        results = parse_artifacts(iter_dir_files(artifacts_dir))
    except ArtifactRejected as exc:
        click.echo(f"Cannot read the artifacts: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    evidence = evidence_from_artifacts(results, environment=environment, repository=repository, sha=sha, created_at=now)
    decision = evaluate(evidence, policy, environment, now, scope=OFFLINE_SCOPE)
    if fmt == "json":
        data = decision.summary_dict()
        data["problems"] = results.problems
        data["refused"] = [r.model_dump() for r in evidence.refused]
        data["not_understood"] = [f.model_dump() for f in evidence.not_understood]
        data["not_understood_total"] = evidence.not_understood_total
        click.echo(json.dumps(data, indent=2, default=str))
    elif fmt == "markdown":
        click.echo(check_run_markdown(decision))
    else:
        click.echo(render_text(decision), nl=False)
        for problem in results.problems:
            click.echo(f"warning: {problem}", err=True)
    sys.exit(_EXIT[decision.action])
