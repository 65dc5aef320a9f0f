"""Risk model figures on simulated histories: training time, learning curve, and `gonogo model explain` wall-clock.

    .venv/bin/python benchmarks/risk_model.py [--rows 100000] [--curve 300,1000,20000] [--seeds 3] [--skip-train]

Targets: training on 100,000 rows under 30 s; on the learning curve (train on the first n rows,
score the next 5,000 with the earlier rows as context) at least 95 % of the true probabilities'
AUC at 20,000 rows with ECE <= 0.05; `gonogo model explain` of one row under 1 s wall-clock,
start-up included. Figures depend on the machine's load (2 shared cores here); set
OMP_NUM_THREADS=1 on a crowded machine, the boosted trees otherwise spin on busy cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorer.risk.artifact import labelled_training_set, train_model
from scorer.risk.explain import risk_estimate
from scorer.risk.features import build_features
from scorer.risk.metrics import evaluate
from tests.simulate_history import simulate_history

TEST_ROWS = 5000


def learning_curve(sizes: list[int], seeds: int) -> list[dict[str, float]]:
    """Mean AUC share of the truth and ECE per training size, over ``seeds`` simulated histories."""
    out = []
    for n in sizes:
        shares, eces, aucs = [], [], []
        for seed in range(seeds):
            history, truth = simulate_history(n + TEST_ROWS, seed=100 + seed)
            X, y, h = labelled_training_set(history)
            p_true = truth[h.index.to_numpy()]
            train = np.arange(len(y)) < n
            model = train_model(history.iloc[:n], random_state=seed)
            p = model.predict_risk(X[~train])
            m = evaluate(y[~train], p)
            true_auc = roc_auc_score(y[~train], p_true[~train])
            aucs.append(m["roc_auc"])
            shares.append(m["roc_auc"] / true_auc)
            eces.append(m["ece"])
        out.append({"rows": n, "auc": statistics.mean(aucs), "share_of_truth": statistics.mean(shares),
                    "ece": statistics.mean(eces)})
    return out


def explain_wall_clock(rows: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of `gonogo model explain` of the last row of a ``rows``-row history, start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        history, _ = simulate_history(rows, seed=0)
        path, model = Path(tmp) / "h.parquet", Path(tmp) / "m.bin"
        history.to_parquet(path)
        model.write_bytes(train_model(history, random_state=0).to_bytes())
        gonogo = Path(sys.executable).with_name("gonogo")
        cmd = [str(gonogo), "model", "explain", "--model", str(model), "--history", str(path),
               "--row", str(history["deployment_id"].iloc[-1])]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the file cache once
        t0 = time.perf_counter()
        before = os.times()
        subprocess.run(cmd, check=True, capture_output=True)
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        return time.perf_counter() - t0, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--curve", default="300,1000,20000", help="training sizes of the learning curve")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--explain-rows", type=int, default=20_000,
                        help="rows of the history `model explain` reads (0: leave it out, as benchmarks/startup.py)")
    parser.add_argument("--skip-train", action="store_true", help="only the learning curve and explain")
    args = parser.parse_args()

    for point in learning_curve([int(s) for s in args.curve.split(",") if s], args.seeds):
        print(f"learning curve: {point['rows']:>6,} rows: AUC {point['auc']:.3f} = {point['share_of_truth']:.1%} "
              f"of the truth's, ECE {point['ece']:.3f}", flush=True)
    if args.explain_rows > 0:
        wall, cpu = explain_wall_clock(args.explain_rows)
        print(f"`gonogo model explain` of one row of a {args.explain_rows:,}-row history: {wall:.2f} s wall-clock, "
              f"{cpu:.2f} s of CPU (start-up included; target < 1 s)", flush=True)
    if args.skip_train:
        return

    history, _ = simulate_history(args.rows, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    trained = train_model(history, random_state=0)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    meta = trained.metadata
    print(f"training on {args.rows:,} rows: {train_s:.1f} s wall-clock, {train_cpu:.1f} s of CPU (target < 30 s); "
          f"kind {meta['kind']}, "
          f"calibration {meta['calibration']}, outer validation AUC {meta['metrics'].get('roc_auc'):.3f}, "
          f"ECE {meta['metrics'].get('ece'):.3f}")

    features = build_features(history)
    row = features.iloc[[-1]]
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        risk_estimate(trained, row, top=5)
        times.append(time.perf_counter() - t0)
    print(f"one prediction with explanation: median {statistics.median(times) * 1e3:.2f} ms, "
          f"p95 {sorted(times)[int(0.95 * len(times))] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
