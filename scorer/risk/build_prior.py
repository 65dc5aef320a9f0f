"""Build the cold-start prior from the public ISSTA21 change-risk data (reproducible).

    python -m scorer.risk.build_prior --corpus ../shared/corpus/change-risk/issta21 \\
        --output scorer/risk/prior/prior.bin

The prior learns only the change features our schema shares with commit-level data
(``features.CHANGE_FEATURES``); everything else is unknown for it. The data is read from the
corpus and never copied into the repository; only the fitted model is committed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from scorer.risk.artifact import TrainedRiskModel, library_versions
from scorer.risk.changerisk import PROJECTS, read_history
from scorer.risk.features import CHANGE_FEATURES, build_features
from scorer.risk.history import failure_labels
from scorer.risk.model import RiskModel

SOURCE = {
    "name": "ISSTA21 just-in-time defect prediction data (Zeng et al., 'Deep just-in-time defect "
            "prediction: how far are we?', ISSTA 2021)",
    "repository": "https://github.com/ZZR0/ISSTA21-JIT-DP",
    "commit": "5fbf45b",
    "path": "Data_Extraction/git_base/datasets/",
    "licence": "MIT",
}
# A smaller, smoother model than the default: it only has to rank changes, and the file is committed.
PRIOR_PARAMS: dict[str, Any] = {"max_iter": 150, "max_leaf_nodes": 8, "min_samples_leaf": 200}


def build(corpus: Path, random_state: int = 0, projects: tuple[str, ...] = PROJECTS,
          max_rows: int | None = None, features: tuple[str, ...] = CHANGE_FEATURES) -> TrainedRiskModel:
    """Train the prior on the given projects' commits (the latest ``max_rows`` of them), in chronological order.

    A benchmark that scores a project builds its prior without that project (leave-one-project-out),
    so the prior has never seen the rows being scored.
    """
    history = read_history(corpus, projects)
    frame = build_features(history)[list(features)]
    if max_rows is not None and len(history) > max_rows:
        history, frame = history.iloc[-max_rows:], frame.iloc[-max_rows:]
    y = failure_labels(history).to_numpy().astype(int)
    model = RiskModel(random_state=random_state, **PRIOR_PARAMS).fit(frame, y)
    created = history["created_at"]
    meta = {
        "format": 1,
        "version": "prior-issta21-" + ("all" if projects == PROJECTS else "without-" + "-".join(
            p for p in PROJECTS if p not in projects)),
        "kind": model.kind_,
        "calibration": model.calibration_,
        "training_window": {"min_created_at": created.min().isoformat(), "max_created_at": created.max().isoformat()},
        "rows": len(y),
        "failures": int(y.sum()),
        "projects": list(projects),
        "features": list(features),
        "libraries": library_versions(),
        "metrics": model.validation_metrics_,
        "params": PRIOR_PARAMS,
        "random_state": random_state,
        "source": SOURCE,
    }
    return TrainedRiskModel(estimator=model, metadata=meta)


def main(argv: list[str] | None = None) -> None:
    """Build the prior and write it to --output."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder with the *_k_feature.csv files")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--without", action="append", default=[], choices=PROJECTS,
                        help="leave this project out (repeatable), e.g. to benchmark on it")
    parser.add_argument("--max-rows", type=int, default=None, help="train on the latest N commits only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    projects = tuple(p for p in PROJECTS if p not in args.without)
    prior = build(args.corpus, args.random_state, projects, args.max_rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(prior.to_bytes())
    m = prior.metadata["metrics"]
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes): {prior.metadata['rows']:,} commits, "
          f"kind {prior.metadata['kind']}, calibration {prior.metadata['calibration']}, "
          f"validation AUC {m.get('roc_auc')}, ECE {m.get('ece')}")


if __name__ == "__main__":
    main()
