"""The risk model on short stretches of real history: ISSTA21 windows, with and without the short-history settings.

Per project (commits in date order, the schema columns of ``scorer.risk.changerisk``), a window starts
every 6,000 commits: the local model (no prior) is trained on n consecutive commits and scores the next
1,000, whose history features see the earlier commits as context. Windows with fewer than 20 failures
to learn from or 5 to score are skipped. Two fits per window: the default one, and one whose
``max_samples_additive`` is set so that the short-history settings apply (``--applied``) or never do
(``--earlier``), for the mean ROC AUC and ECE over the windows of each size.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/short_history_windows.py [--sizes 1000,1500,2000,2500]

This is how ``max_samples_additive`` (1,200 rows) was set: docs/risk-model.md, the learning curve.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorer.evidence import HISTORY_COLUMNS
from scorer.risk.artifact import labelled_training_set
from scorer.risk.changerisk import PROJECTS, read_project, to_history
from scorer.risk.metrics import evaluate
from scorer.risk.model import RiskModel

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "change-risk" / "issta21"
TEST_ROWS = 1000
STRIDE = 6000
VARIANTS = {"earlier": 0, "applied": 10**9}  # max_samples_additive: never, always (below SMALL_ROWS)


def windows(corpus: Path, sizes: list[int], variants: list[str]) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(variant, size) -> [(ROC AUC, ECE) per window]."""
    out: dict[tuple[str, int], list[tuple[float, float]]] = {(v, n): [] for v in variants for n in sizes}
    for project in PROJECTS:
        h = to_history(read_project(corpus, project), project)
        h = h.iloc[np.argsort(h["created_at"].to_numpy(), kind="stable")].reset_index(drop=True)
        X, y, _ = labelled_training_set(h.reindex(columns=list(HISTORY_COLUMNS)))
        for n in sizes:
            for start in range(0, len(y) - n - TEST_ROWS + 1, STRIDE):
                train, test = slice(start, start + n), slice(start + n, start + n + TEST_ROWS)
                if y[train].sum() < 20 or y[test].sum() < 5:
                    continue
                for variant in variants:
                    model = RiskModel(random_state=0, max_samples_additive=VARIANTS[variant])
                    model.fit(X.iloc[train], y[train])
                    m = evaluate(y[test], model.predict_risk(X.iloc[test]))
                    out[(variant, n)].append((m["roc_auc"], m["ece"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sizes", default="1000,1500,2000,2500")
    parser.add_argument("--variants", default="earlier,applied")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    found = windows(args.corpus, sizes, args.variants.split(","))
    for (variant, n), rows in found.items():
        print(f"{n:>6,} rows, {variant:>7}: {len(rows)} windows, mean ROC AUC "
              f"{statistics.mean(r[0] for r in rows):.4f}, mean ECE {statistics.mean(r[1] for r in rows):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
