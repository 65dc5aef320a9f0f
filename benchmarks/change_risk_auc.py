"""ROC AUC of RiskModel on the public ISSTA21 change-risk data, next to the published baselines.

Protocol (as published): per project, commits sorted by date, train on the first 80 %, test on
the last 20 %. Two feature sets: gonogo's own schema mapped from the commit metrics (what the
cold-start prior learns from), and the same plus the Kamei metrics our schema has no column for
(extra columns, which DESIGN.md allows a model to use).

    .venv/bin/python benchmarks/change_risk_auc.py [--corpus ../shared/corpus/change-risk/issta21] [--max-train N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scorer.risk.changerisk import PROJECTS, extra_features, read_project, to_history
from scorer.risk.features import CHANGE_FEATURES, build_features
from scorer.risk.history import failure_labels
from scorer.risk.model import RiskModel

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "change-risk" / "issta21"


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
    return pd.DataFrame(rows).T.rename(columns={"mean": "mean"})


def project_auc(corpus: Path, project: str, max_train: int | None, random_state: int = 0) -> dict[str, float]:
    """Return the test AUC of both feature sets for one project."""
    h = to_history(read_project(corpus, project), project)
    h = h.iloc[np.argsort(h["created_at"].to_numpy(), kind="stable")].reset_index(drop=True)
    ours = build_features(h)[list(CHANGE_FEATURES)]
    extended = ours.join(extra_features(h))
    y = failure_labels(h).to_numpy().astype(int)
    cut = int(len(h) * 0.8)
    start = max(0, cut - max_train) if max_train else 0  # keep the most recent training rows
    out: dict[str, float] = {}
    for name, X in (("gonogo_features", ours), ("gonogo_plus_kamei", extended)):
        model = RiskModel(random_state=random_state).fit(X.iloc[start:cut], y[start:cut])
        out[name] = float(roc_auc_score(y[cut:], model.predict_risk(X.iloc[cut:])))
        out[f"{name}_kind"] = model.kind_
    return out


def run(corpus: Path, max_train: int | None = None) -> pd.DataFrame:
    """Return per-project and mean AUCs of ours and the published baselines."""
    table = {p: project_auc(corpus, p, max_train) for p in PROJECTS}
    ours = pd.DataFrame(table).T
    result = published_baselines(corpus).T.reindex(list(PROJECTS))
    result["gonogo"] = ours["gonogo_plus_kamei"].astype(float)
    result["gonogo (schema only)"] = ours["gonogo_features"].astype(float)
    result.loc["mean"] = result.mean(numeric_only=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--max-train", type=int, default=None, help="train on at most the N latest rows")
    args = parser.parse_args()
    t0 = time.perf_counter()
    table = run(args.corpus, args.max_train)
    print(table.round(3).to_string())
    print(f"\nmean ROC AUC gonogo {table.loc['mean', 'gonogo']:.3f} (schema only "
          f"{table.loc['mean', 'gonogo (schema only)']:.3f}); best published LApredict "
          f"{table.loc['mean', 'LApredict']:.3f}; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
