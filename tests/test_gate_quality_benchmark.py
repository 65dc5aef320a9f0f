"""The gate-quality benchmark's replay counts what it says it counts (a few repositories, two months)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "gate_quality", Path(__file__).resolve().parents[1] / "benchmarks" / "gate_quality.py"
)
assert _spec is not None and _spec.loader is not None
gate_quality = importlib.util.module_from_spec(_spec)
sys.modules["gate_quality"] = gate_quality  # dataclasses look their module up by name
_spec.loader.exec_module(gate_quality)


def test_a_small_fleet_replays_through_the_decision_and_retrains() -> None:
    result = gate_quality.run(repos=6, months=2, seed=3, model_params={"min_samples_boosting": 10**9})
    months = result["per_month"]
    assert [m["month"] for m in months] == [1, 2]
    assert sum(m["deployments"] for m in months) == result["deployments"] > 0
    for m in months:
        v = m["verdicts"]
        assert sum(v.values()) == m["deployments"]
        assert round(m["auto_share"] * m["deployments"]) == v["go"] + v["no-go"]
        assert m["escaped"] <= v["go"] and m["escaped"] <= m["failures"]
        assert m["false_blocks"] <= v["escalate"] + v["no-go"]
    assert result["timings"]["train_s"] > 0  # a model was trained on month 1's outcomes for month 2
    svg = gate_quality.svg(result)
    assert svg.startswith("<svg") and svg.count("<polyline") == 5
    assert set(gate_quality.summary(result)["targets"]) == {
        "auto_share_after_month_1 >= 0.8", "escaped <= half of naive", "false-block rate lower at the end than in month 1"}
