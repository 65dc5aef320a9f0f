"""Map the public ISSTA21 just-in-time change-risk data onto the deployment-history schema.

Source: ZZR0/ISSTA21-JIT-DP (MIT), ``*_k_feature.csv``: one row per commit with the Kamei et al.
change metrics and a ``bug`` label (the commit later turned out to introduce a defect).
Mapping (one commit = one change): la -> additions, ld -> deletions, nf -> files_changed,
ns -> subsystems (top-level directories), nd -> directories, fix -> fix_commits, entrophy -> entropy (normalised by log2 of the files
touched, as ours is), exp -> author_experience, rexp -> author_recent_experience, sexp ->
author_subsystem_experience, ndev -> file_developers, age -> file_age_days, nuc -> file_prior_changes,
lt -> lines_before, commits = authors = 1, date -> created_at, bug -> outcome failure/success. The raw
Kamei metrics are also kept as extra columns (``KAMEI_EXTRA``, ``kamei_*``) for the benchmark's
reference figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PROJECTS: tuple[str, ...] = ("qt", "openstack", "jdt", "platform", "gerrit", "go")
KAMEI_EXTRA: tuple[str, ...] = ("nd", "lt", "fix", "ndev", "age", "nuc", "rexp", "sexp")


def read_project(corpus: str | Path, project: str) -> pd.DataFrame:
    """Read one project's ``<project>_k_feature.csv`` (the ``__`` copy of the label is dropped)."""
    path = Path(corpus) / f"{project}_k_feature.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; point --corpus at ../shared/corpus/change-risk/issta21")
    raw = pd.read_csv(path)
    return raw.drop(columns=[c for c in ("__", "Unnamed: 0") if c in raw.columns])


def to_history(raw: pd.DataFrame, project: str) -> pd.DataFrame:
    """Return the commits of one project as deployment-history rows (plus ``kamei_*`` extras)."""
    created = pd.to_datetime(raw["date"].astype("int64"), unit="s", utc=True)
    nf = raw["nf"].astype(float)
    entropy = np.where(nf > 1, raw["entrophy"].astype(float) / np.log2(np.maximum(nf, 2.0)), 0.0)
    h = pd.DataFrame(
        {
            "deployment_id": project + ":" + raw["_id"].astype(str),
            "repository": project,
            "environment": "commit",
            "sha": raw["_id"].astype(str),
            "created_at": created,
            "commits": 1.0,
            "files_changed": nf,
            "additions": raw["la"].astype(float),
            "deletions": raw["ld"].astype(float),
            "subsystems": raw["ns"].astype(float),
            "entropy": np.clip(entropy, 0.0, 1.0),
            "authors": 1.0,
            "author_experience": raw["exp"].astype(float),
            "directories": raw["nd"].astype(float),
            "fix_commits": raw["fix"].astype(float),
            "file_developers": raw["ndev"].astype(float),
            "file_age_days": raw["age"].astype(float),
            "file_prior_changes": raw["nuc"].astype(float),
            "author_recent_experience": raw["rexp"].astype(float),
            "author_subsystem_experience": raw["sexp"].astype(float),
            "lines_before": raw["lt"].astype(float),
            "hour_utc": created.dt.hour.astype(float),
            "weekday": created.dt.day_of_week.astype(float),
            "outcome": np.where(raw["bug"].astype(int) == 1, "failure", "success").astype(object),
        }
    )
    for col in KAMEI_EXTRA:
        h[f"kamei_{col}"] = raw[col].astype(float)
    return h


def read_history(corpus: str | Path, projects: tuple[str, ...] = PROJECTS) -> pd.DataFrame:
    """Return all projects as one history, in chronological order."""
    parts = [to_history(read_project(corpus, p), p) for p in projects]
    h = pd.concat(parts, ignore_index=True)
    return h.iloc[np.argsort(h["created_at"].to_numpy(), kind="stable")].reset_index(drop=True)


def extra_features(history: pd.DataFrame) -> pd.DataFrame:
    """Return log-scaled Kamei metrics that have no column in our schema (benchmark use only)."""
    out = pd.DataFrame(index=history.index)
    for col in KAMEI_EXTRA:
        v = history[f"kamei_{col}"].astype(float)
        out[f"kamei_{col}_log"] = v if col == "fix" else np.log1p(v.clip(lower=0))
    # Relative churn (lines added/deleted per line already in the touched files), as Kamei et al.
    lt = history["kamei_lt"].astype(float).clip(lower=0) + 1.0
    out["kamei_relative_added_log"] = np.log1p(history["additions"].astype(float).clip(lower=0) / lt)
    out["kamei_relative_deleted_log"] = np.log1p(history["deletions"].astype(float).clip(lower=0) / lt)
    return out
