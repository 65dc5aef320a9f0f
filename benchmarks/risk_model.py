"""Training time on 100,000 history rows and the latency of one prediction with its explanation.

    .venv/bin/python benchmarks/risk_model.py [--rows 100000]

Targets (issue 6): training under 30 s; one prediction with explanation under 5 ms. Figures
depend on the machine's load (2 shared cores here); the median of repeated predictions is shown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scorer.risk.artifact import train_model
from scorer.risk.explain import risk_estimate
from scorer.risk.features import build_features
from tests.simulate_history import simulate_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    history, _ = simulate_history(args.rows, seed=0)

    t0 = time.perf_counter()
    trained = train_model(history, random_state=0)
    train_s = time.perf_counter() - t0
    meta = trained.metadata
    print(f"training on {args.rows:,} rows: {train_s:.1f} s (target < 30 s); kind {meta['kind']}, "
          f"calibration {meta['calibration']}, validation AUC {meta['metrics'].get('roc_auc'):.3f}, "
          f"ECE {meta['metrics'].get('ece'):.3f}")

    t0 = time.perf_counter()
    features = build_features(history)
    print(f"features for the whole history: {time.perf_counter() - t0:.2f} s")
    row = features.iloc[[-1]]
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        estimate = risk_estimate(trained, row, top=5)
        times.append(time.perf_counter() - t0)
    print(f"one prediction with explanation: median {statistics.median(times) * 1e3:.2f} ms, "
          f"p95 {sorted(times)[int(0.95 * len(times))] * 1e3:.2f} ms (target < 5 ms)")
    print(f"example: risk {estimate.probability:.1%}, base {estimate.base_rate:.1%}")
    for d in estimate.drivers:
        print(f"  {d.text}")


if __name__ == "__main__":
    main()
