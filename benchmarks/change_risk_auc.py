"""ROC AUC and calibration of the risk model on the public ISSTA21 change-risk data, through `gonogo model`.

Protocol, per project: commits sorted by date; the first 80 % are the training period, the rest the
test period (``--since`` = the first test commit's time). The history file holds only the columns
of gonogo's history schema (docs/history.md), mapped from the commit metrics by
``scorer.risk.changerisk``: the headline uses every schema column a commit fills, including the
history of the changed files and the author's experience gonogo collects from GitHub
(``HISTORY_ADDED`` below); the figure with those left empty (the schema before they were added) is
printed beside it. The model is trained with ``gonogo model train`` on the training period,
blended with a cold-start prior built *without the project being scored* (leave-one-project-out),
and scored with ``gonogo model evaluate --since`` on the whole file, so the training rows are
context for the test period's history features and are not scored.

Beside it, on the same rows and columns, in the same run: ``log1p -> StandardScaler ->
LogisticRegression`` (the plain baseline the default pipeline must not rank worse than), ranking
by lines added (LApredict), and the published deep-learning baselines. ``--extra`` adds a second
gonogo figure fitted in process with every Kamei metric added again as raw log columns, for reference.
``--quick`` scores three projects (jdt, platform, gerrit) with a smaller prior, for iterating.

    .venv/bin/python benchmarks/change_risk_auc.py [--projects go,jdt] [--prior-rows 30000] [--extra] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from click.testing import CliRunner
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from github_app.cli import cli
from scorer.evidence import HISTORY_COLUMNS
from scorer.risk.build_prior import build as build_prior
from scorer.risk.changerisk import PROJECTS, extra_features, read_project, to_history
from scorer.risk.features import CHANGE_FEATURES, build_features
from scorer.risk.history import failure_labels
from scorer.risk.metrics import evaluate
from scorer.risk.model import RiskModel

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "change-risk" / "issta21"
QUICK_PROJECTS = ("jdt", "platform", "gerrit")
# The history columns gonogo collects from the commits of the changed files and of the main author
# (Kamei's ndev, age, nuc, lt, rexp, sexp): the figure beside the headline leaves them empty.
HISTORY_ADDED = ("file_developers", "file_age_days", "file_prior_changes", "lines_before",
                 "author_recent_experience", "author_subsystem_experience")  # fmt: skip
HISTORY_FEATURES = ("file_developers_log", "file_age_days_log", "file_prior_changes_log", "lines_before_log",
                    "relative_additions_log", "relative_deletions_log", "lines_before_per_file_log",
                    "prior_changes_per_file_log", "author_recent_experience_log", "author_subsystem_experience_log",
                    "file_prior_changes_vs_repo_median_log", "file_developers_vs_repo_median_log",
                    "lines_before_vs_repo_median_log", "file_age_days_vs_repo_median_log")  # fmt: skip
# The numeric schema columns a commit-level history fills: what the plain baseline sees.
BASELINE_COLUMNS = ("commits", "files_changed", "additions", "deletions", "subsystems", "entropy", "authors",
                    "author_experience", "directories", "fix_commits", *HISTORY_ADDED, "hour_utc", "weekday")  # fmt: skip


def published_baselines(corpus: Path) -> pd.DataFrame:
    """Return the published within-project AUCs (rows: method, columns: project)."""
    raw = pd.read_csv(corpus / "issta21_ResultAnalysis_RQ4-T8_result.csv", header=None, skipinitialspace=True)
    projects = [str(p).strip() for p in raw.iloc[0, 1:].tolist()]
    tasks = [str(t).strip() for t in raw.iloc[1, 1:].tolist()]
    rows = {}
    for _, r in raw.iloc[2:].iterrows():
        vals = {p.lower(): float(v) for p, t, v in zip(projects, tasks, r.iloc[1:].tolist(), strict=False)
                if t == "WP" and p not in ("nan", "") and pd.notna(v)}
        rows[str(r.iloc[0]).strip()] = vals
    return pd.DataFrame(rows).T


def plain_logistic() -> Any:
    """The baseline: log1p of the raw columns, standardised, logistic regression."""
    return make_pipeline(SimpleImputer(strategy="median"), FunctionTransformer(lambda x: np.log1p(np.clip(x, 0, None))),
                         StandardScaler(), LogisticRegression(max_iter=2000))


def _cli(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"gonogo {' '.join(args)} failed: {result.output}")
    out = result.stdout
    return dict(json.loads(out[out.index("{"):]))


def project_figures(corpus: Path, project: str, workdir: Path, prior_rows: int | None, extra: bool) -> dict[str, Any]:
    """Train and score one project through the CLI, with the baselines on the same rows."""
    h = to_history(read_project(corpus, project), project)
    h = h.iloc[np.argsort(h["created_at"].to_numpy(), kind="stable")].reset_index(drop=True)
    since = h["created_at"].iloc[int(len(h) * 0.8)]
    train = (h["created_at"] < since).to_numpy()
    test = ~train
    others = tuple(p for p in PROJECTS if p != project)
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    figures: dict[str, dict[str, Any]] = {}
    for variant, blank in (("schema", ()), ("before", HISTORY_ADDED)):
        # The prior never sees this project, and knows only the columns the variant fills.
        prior_path = workdir / f"prior-without-{project}-{variant}.bin"
        prior_features = tuple(f for f in CHANGE_FEATURES if not blank or f not in HISTORY_FEATURES)
        prior_path.write_bytes(build_prior(corpus, projects=others, max_rows=prior_rows,
                                           features=prior_features).to_bytes())
        schema = h.reindex(columns=list(HISTORY_COLUMNS))  # columns the commit data cannot fill stay empty
        schema.loc[:, list(blank)] = np.nan
        full_path, train_path = workdir / f"{project}-{variant}.parquet", workdir / f"{project}-{variant}-train.parquet"
        schema.to_parquet(full_path)
        schema[train].to_parquet(train_path)
        model_path = workdir / f"{project}-{variant}.bin"
        summary = _cli("model", "train", "--history", str(train_path), "--output", str(model_path),
                       "--prior-model", str(prior_path))
        evaluated = _cli("model", "evaluate", "--model", str(model_path), "--history", str(full_path),
                         "--since", stamp, "--format", "json")
        figures[variant] = {"summary": summary, "evaluated": evaluated}
    ours, summary = figures["schema"]["evaluated"], figures["schema"]["summary"]

    y = failure_labels(h).to_numpy().astype(int)
    X_plain = h[list(BASELINE_COLUMNS)].astype(float).to_numpy()
    plain = plain_logistic().fit(X_plain[train], y[train])
    p_plain = plain.predict_proba(X_plain[test])[:, 1]
    plain_metrics = evaluate(y[test], p_plain)
    row: dict[str, Any] = {
        "rows_train": int(train.sum()), "rows_test": int(test.sum()), "since": stamp,
        "gonogo": ours["roc_auc"], "gonogo_ece": ours["ece"], "gonogo_catch_10": ours["catch_rate"]["0.1"],
        "gonogo_kind": summary["kind"], "gonogo_calibration": summary["calibration"],
        "gonogo_validation_auc": (summary.get("validation") or {}).get("roc_auc"),
        "gonogo_before": figures["before"]["evaluated"]["roc_auc"], "gonogo_before_ece": figures["before"]["evaluated"]["ece"],
        "plain_lr": plain_metrics["roc_auc"], "plain_lr_ece": plain_metrics["ece"],
        "plain_lr_catch_10": plain_metrics["catch_rate"]["0.1"],
        "la_only": float(roc_auc_score(y[test], h["additions"].to_numpy()[test])),
    }  # fmt: skip
    if extra:
        features = build_features(h)[list(CHANGE_FEATURES)].join(extra_features(h))
        model = RiskModel(random_state=0).fit(features[train], y[train])
        row["gonogo_plus_kamei"] = float(roc_auc_score(y[test], model.predict_risk(features[test])))
    return row


def run(corpus: Path, projects: tuple[str, ...] = PROJECTS, prior_rows: int | None = 30_000,
        extra: bool = False) -> pd.DataFrame:
    """Return per-project and mean figures of gonogo, the baselines and the published methods."""
    with tempfile.TemporaryDirectory() as tmp:
        table = {p: project_figures(corpus, p, Path(tmp), prior_rows, extra) for p in projects}
    ours = pd.DataFrame(table).T
    published = published_baselines(corpus).T.reindex(list(projects))
    result = ours.join(published[["LApredict", "DeepJIT", "CC2Vec"]].add_prefix("published_"))
    numeric = result.apply(pd.to_numeric, errors="coerce")
    result.loc["mean"] = numeric.mean(numeric_only=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--projects", default=",".join(PROJECTS), help="comma-separated subset (prototyping)")
    parser.add_argument("--prior-rows", type=int, default=30_000,
                        help="the leave-one-project-out prior learns from the latest N commits of the other projects")
    parser.add_argument("--extra", action="store_true", help="also fit in process with every raw Kamei metric")
    parser.add_argument("--quick", action="store_true",
                        help="iterate: jdt, platform and gerrit only, priors from the latest 10,000 other commits")
    args = parser.parse_args()
    t0 = time.perf_counter()
    projects = tuple(p.strip() for p in args.projects.split(",") if p.strip())
    if args.quick:
        projects, args.prior_rows = QUICK_PROJECTS, min(args.prior_rows, 10_000)
    table = run(args.corpus, projects, args.prior_rows, args.extra)
    pd.set_option("display.width", 250)
    print(table.drop(columns=["since"]).to_string(float_format=lambda v: f"{v:.3f}"))
    m = table.loc["mean"]
    print(f"\nmean ROC AUC, schema columns only, through `gonogo model`: gonogo {m['gonogo']:.3f} "
          f"(ECE {m['gonogo_ece']:.3f}, catches {m['gonogo_catch_10']:.0%} of failures gating 10 %); "
          f"log1p+StandardScaler+LogisticRegression {m['plain_lr']:.3f} (ECE {m['plain_lr_ece']:.3f}); "
          f"lines added alone {m['la_only']:.3f}; without the files' history and the author's recent and "
          f"subsystem experience {m['gonogo_before']:.3f} (ECE {m['gonogo_before_ece']:.3f})"
          + (f"; with the Kamei columns {m['gonogo_plus_kamei']:.3f}" if "gonogo_plus_kamei" in m else "")
          + f"; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
