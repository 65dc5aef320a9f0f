"""`gonogo model`: train, evaluate and explain the risk model from history files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from scorer.risk.artifact import TrainedRiskModel
    from scorer.risk.lean import LeanTrained

# The heavy modules (pandas, scikit-learn, SciPy) are imported inside each command: `model explain`
# scores a lean copy of the model and imports neither scikit-learn nor SciPy.

TRAIN_STEPS = ("features", "fit", "metadata", "done")


class RegistryNotAvailable(RuntimeError):
    """The database model registry is not wired into this build yet."""


def register_model(trained: TrainedRiskModel, *, settings: Any = None, database_url: str | None = None,
                   repository: str | None = None, history: Any = None) -> str:
    """Store ``trained`` in the database registry (active if it beats the champion) and return its version."""
    from github_app.commands.audit import open_engine
    from github_app.risk_registry import register

    url = database_url or (settings.database_url if settings is not None else None)
    try:
        engine = open_engine(url)
    except ModuleNotFoundError as exc:  # a build without the database layer
        raise RegistryNotAvailable(f"the database registry needs {exc.name}; pass --output PATH instead") from None
    try:
        record = register(engine, trained, repository, history=history)
    finally:
        engine.dispose()
    state = "active" if record.active else "registered, not active"
    click.echo(f"model {record.version} {state}: {record.meta['registry']['reason']}", err=True)
    return record.version


def _history(path: Path) -> Any:
    from scorer.risk.history import HistoryError, load_history

    try:
        return load_history(path)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None


def _model(path: Path) -> TrainedRiskModel:
    from scorer.risk.artifact import TrainedRiskModel

    try:
        return TrainedRiskModel.from_bytes(path.read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read model {path}: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@click.group()
def model() -> None:
    """Train, evaluate and explain the deployment risk model."""


@model.command()
@click.option("--history", "history_path", required=True, type=click.Path(path_type=Path),
              help="Deployment history, CSV or Parquet (columns: docs/history.md).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write the model here; without it the model is registered in the database.")
@click.option("--prior/--no-prior", default=True, show_default=True,
              help="Blend with the packaged cold-start prior while outcomes are few.")
@click.option("--prior-model", "prior_path", type=click.Path(path_type=Path), default=None,
              help="Blend with this prior (a file written by `python -m scorer.risk.build_prior`) instead of the "
                   "packaged one.")
@click.option("--random-state", type=int, default=0, show_default=True)
@click.option("--repo", "repository", default=None,
              help="Register as this repository's model (owner/name); default: a global model.")
@click.option("--database-url", envvar="GONOGO_DATABASE_URL", default=None,
              help="Registry database (default: GONOGO_DATABASE_URL, else the local SQLite file).")
def train(history_path: Path, output: Path | None, prior: bool, prior_path: Path | None, random_state: int,
          repository: str | None, database_url: str | None) -> None:
    """Train a risk model on a history file."""
    from tqdm import tqdm

    from scorer.risk.artifact import load_prior, train_model

    history = _history(history_path)
    prior_model = (_model(prior_path) if prior_path is not None else load_prior()) if prior else None
    with tqdm(total=len(TRAIN_STEPS), desc="training", unit="step", file=sys.stderr) as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        try:
            trained = train_model(history, prior=prior_model, random_state=random_state, on_step=step)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if output is None:
        try:
            version = register_model(trained, database_url=database_url, repository=repository, history=history)
        except RegistryNotAvailable as exc:
            raise click.ClickException(str(exc)) from None
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(trained.to_bytes())
        version = trained.version
    meta = trained.metadata
    summary = {
        "version": version,
        "output": str(output) if output else None,
        "rows": meta["rows"],
        "failures": meta["failures"],
        "kind": meta["kind"],
        "calibration": meta["calibration"],
        "fallback_reason": meta["fallback_reason"],
        "training_window": meta["training_window"],
        "blend": meta.get("blend"),
        "validation": meta["metrics"],
    }
    click.echo(json.dumps(summary, indent=2))


@model.command()
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path))
@click.option("--history", "history_path", required=True, type=click.Path(path_type=Path))
@click.option("--since", default=None,
              help="Score only rows created at or after this time (ISO 8601, UTC); earlier rows are context: they "
                   "feed the history features of the scored rows and are not scored themselves.")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write a reliability diagram and ROC to this PNG.")
def evaluate(model_path: Path, history_path: Path, since: str | None, fmt: str, plot: Path | None) -> None:
    """Score a model on the labelled rows of a history file (optionally only those since a time)."""
    import pandas as pd

    from github_app.commands.audit import parse_when
    from scorer.risk.artifact import labelled_training_set
    from scorer.risk.metrics import DECISION_LINE, plot_evaluation
    from scorer.risk.metrics import evaluate as evaluate_predictions

    trained = _model(model_path)
    start = parse_when(since) if since is not None else None
    X, y, h = labelled_training_set(_history(history_path))
    context = 0
    if start is not None:
        scored = (h["created_at"] >= pd.Timestamp(start)).to_numpy()
        context = int((~scored).sum())
        X, y = X[scored], y[scored]
    if len(y) == 0:
        where = f" created since {since}" if since else ""
        raise click.ClickException(f"the history has no labelled outcomes{where} to evaluate against; fill the "
                                   "outcome column or pick an earlier --since")
    p = trained.predict_risk(X)
    metrics = evaluate_predictions(y, p)
    metrics["model_version"] = trained.version
    metrics["since"] = start.isoformat() if start is not None else None
    metrics["context_rows"] = context
    trained_until = (trained.metadata.get("training_window") or {}).get("max_created_at")
    if start is not None and trained_until and pd.Timestamp(trained_until) >= pd.Timestamp(start):
        metrics["warning"] = (f"the model was trained on rows up to {trained_until}, after --since: "
                              "the figures include rows it learnt from")
    if plot is not None:
        plot_evaluation(y, p, plot, title=f"gonogo risk model {trained.version}")
        metrics["plot"] = str(plot)
    if fmt == "json":
        click.echo(json.dumps(metrics, indent=2))
        return
    scope = f" since {metrics['since']} ({context} earlier rows as context)" if start is not None else ""
    click.echo(f"model {trained.version} on {metrics['n']} deployments{scope} ({metrics['positive_rate']:.1%} failed)")
    if "warning" in metrics:
        click.echo(f"  warning: {metrics['warning']}")
    caught = metrics["catch_rate"].get("0.1")
    click.echo(f"  gating the riskiest 10% catches {'n/a' if caught is None else f'{caught:.0%}'} of failures; "
               f"calibration error (ECE) {metrics['ece']:.3f}")
    for key in ("roc_auc", "pr_auc", "brier", "ece"):
        value = metrics[key]
        click.echo(f"  {key:8s} {'n/a' if value is None else f'{value:.3f}'}")
    for share, caught in metrics["catch_rate"].items():
        shown = "n/a" if caught is None else f"{caught:.0%}"
        click.echo(f"  gating the riskiest {float(share):.0%} catches {shown} of failures")
    click.echo(f"  net benefit of holding back risk over {DECISION_LINE:.0%} (the default approve.max_risk): "
               f"{metrics['net_benefit'] * 1000:+.1f} failures per 1,000 deployments, net of the good releases "
               "held back (0 approves everything; the registry never activates a model that lowers it)")


@model.command()
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path))
@click.option("--history", "history_path", required=True, type=click.Path(path_type=Path))
@click.option("--row", "row_id", required=True, help="deployment_id of the row to explain.")
@click.option("--top", type=int, default=10, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
def explain(model_path: Path, history_path: Path, row_id: str, top: int, fmt: str) -> None:
    """Explain one deployment's predicted risk (its features use only earlier rows)."""
    from scorer.risk.explain import explain as explain_row
    from scorer.risk.explain import risk_estimate
    from scorer.risk.features import build_features

    trained = _scoring_model(model_path)
    context, target = _explain_context(history_path, row_id)
    features = build_features(context)
    row = features.loc[target]
    estimate = risk_estimate(trained, row, top=top)
    if fmt == "json":
        click.echo(estimate.model_dump_json(indent=2))
        return
    click.echo(f"deployment {row_id}: risk {estimate.probability:.1%} "
               f"(base {estimate.base_rate:.1%}, model {estimate.model_version})")
    for driver in explain_row(trained, row, top=top):
        click.echo(f"  {driver.text}")


def _scoring_model(path: Path) -> LeanTrained | TrainedRiskModel:
    """The model's lean copy (numpy only) when the file has one, else the whole model."""
    from scorer.risk.lean import read_lean

    try:
        found = read_lean(path.read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read model {path}: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    return found if found is not None else _model(path)


def _explain_context(path: Path, row_id: str) -> tuple[Any, Any]:
    """The rows that can move one row's features, typed, and that row's index label.

    Features look strictly back in time within the row's repository, so only the repository's rows up to
    the explained one are validated and typed, not the whole file.
    """
    import pandas as pd

    from scorer.risk.history import HistoryError, coerce_history, read_history_file, validate_history

    try:
        raw = read_history_file(path)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    if "deployment_id" not in raw.columns:
        raise click.ClickException(validate_history(raw)[0])
    matches = (raw["deployment_id"].astype(str) == row_id).to_numpy().nonzero()[0]
    if len(matches) == 0:
        raise click.ClickException(f"no row with deployment_id {row_id!r} in {path}")
    at = int(matches[0])
    created = pd.to_datetime(raw["created_at"], utc=True, errors="coerce", format="ISO8601")
    if pd.isna(created.iloc[at]):
        raise click.ClickException(str(HistoryError(validate_history(raw.iloc[[at]]))))
    keep = ((raw["repository"].astype(str) == str(raw["repository"].iloc[at])) & (created <= created.iloc[at])).to_numpy()
    context = raw[keep]
    errors = validate_history(context)
    if errors:
        raise click.ClickException(str(HistoryError(errors)))
    return coerce_history(context), raw.index[at]


@model.command()
@click.option("--repo", "repository", default=None, help="Train this repository's model (default: all history, global).")
@click.option("--prior/--no-prior", default=True, show_default=True,
              help="Blend with the packaged cold-start prior while outcomes are few.")
@click.option("--random-state", type=int, default=0, show_default=True)
@click.option("--database-url", envvar="GONOGO_DATABASE_URL", default=None,
              help="Database with the history and the registry (default: GONOGO_DATABASE_URL, else local SQLite).")
def retrain(repository: str | None, prior: bool, random_state: int, database_url: str | None) -> None:
    """Train a challenger from the database history now and register it (active only if at least as good)."""
    from tqdm import tqdm

    from github_app.commands.audit import open_engine
    from github_app.risk_registry import retrain as retrain_from_db

    engine = open_engine(database_url)
    try:
        with tqdm(total=1, desc="retraining", unit="model", file=sys.stderr) as bar:
            record = retrain_from_db(engine, repository, prior=prior, random_state=random_state)
            bar.update(1)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(json.dumps({
        "version": record.version, "repository": record.repository, "active": record.active,
        "reason": record.meta["registry"]["reason"], "rows": record.trained_rows,
        "validation": record.meta.get("metrics"),
    }, indent=2))  # fmt: skip
