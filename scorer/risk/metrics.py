"""How good a risk model is: ranking, calibration and how many failures a gate would catch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

GATED_SHARES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
ECE_BINS = 10

# Tolerances for a challenger: noise on a few hundred validation rows is larger than this.
AUC_TOLERANCE = 0.005
BRIER_TOLERANCE = 0.002
ECE_TOLERANCE = 0.01
# Net benefit at the line is what the gate pays for: a challenger may not give any of it up on the same rows.
NET_BENEFIT_TOLERANCE = 0.0
# The line a gate holds deployments back at: the default ``approve.max_risk`` of a production environment.
DECISION_LINE = 0.15


def net_benefit(y_true: np.ndarray, p: np.ndarray, line: float = DECISION_LINE) -> float:
    """Net benefit of holding back every deployment the model puts over ``line`` (decision-curve analysis).

    Failures held back per deployment, less successes held back per deployment weighted by the odds at the
    line (``line / (1 - line)``: at 15 % a good release held back costs 0.18 of a failure let through).
    Approving everything scores 0; a model that holds back only failures scores the failure rate.
    """
    held = p > line
    n = len(y_true)
    caught = float(np.sum(held & (y_true == 1)))
    wrongly = float(np.sum(held & (y_true == 0)))
    return caught / n - wrongly / n * line / (1.0 - line)


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Return the row-weighted mean |observed rate - mean prediction| over equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(float(y_true[mask].mean()) - float(p[mask].mean()))
    return total / len(p)


def catch_rates(y_true: np.ndarray, p: np.ndarray, shares: tuple[float, ...] = GATED_SHARES) -> dict[str, float | None]:
    """Return, per share of deployments gated (highest risk first), the share of failures caught."""
    failures = float(y_true.sum())
    order = np.argsort(-p, kind="stable")
    out: dict[str, float | None] = {}
    for s in shares:
        k = int(np.ceil(s * len(p)))
        out[str(s)] = float(y_true[order[:k]].sum()) / failures if failures else None
    return out


def evaluate(y_true: Any, p: Any) -> dict[str, Any]:
    """Return n, positive_rate, roc_auc, pr_auc, brier, ece and catch_rate for predictions ``p``."""
    y = np.asarray(y_true, dtype=float)
    q = np.asarray(p, dtype=float)
    if y.shape != q.shape:
        raise ValueError(f"y_true has {y.shape} values but p has {q.shape}; pass one probability per outcome")
    n = len(y)
    if n == 0:
        raise ValueError("cannot evaluate on zero labelled deployments")
    both = 0 < y.sum() < n
    return {
        "n": n,
        "positive_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, q)) if both else None,
        "pr_auc": float(average_precision_score(y, q)) if both else None,
        "brier": float(np.mean((q - y) ** 2)),
        "ece": float(expected_calibration_error(y, q)),
        "catch_rate": catch_rates(y, q),
        "net_benefit": net_benefit(y, q),
    }


def is_at_least_as_good(challenger_metrics: dict[str, Any], champion_metrics: dict[str, Any]) -> bool:
    """Return True when the challenger ranks and calibrates at least as well, within noise tolerances,
    and holds deployments back at the gate's line with at least the champion's net benefit.

    Both metric sets must come from the same time-ordered validation rows (later than both models'
    training data). A champion without usable metrics is always replaced.
    """
    ch_auc, cp_auc = challenger_metrics.get("roc_auc"), champion_metrics.get("roc_auc")
    if cp_auc is None:
        return True
    if ch_auc is None:
        return False
    if ch_auc < cp_auc - AUC_TOLERANCE:
        return False
    ch_brier, cp_brier = challenger_metrics.get("brier"), champion_metrics.get("brier")
    if ch_brier is not None and cp_brier is not None and ch_brier > cp_brier + BRIER_TOLERANCE:
        return False
    ch_ece, cp_ece = challenger_metrics.get("ece"), champion_metrics.get("ece")
    if ch_ece is not None and cp_ece is not None and ch_ece > cp_ece + ECE_TOLERANCE:
        return False
    ch_nb, cp_nb = challenger_metrics.get("net_benefit"), champion_metrics.get("net_benefit")
    return not (ch_nb is not None and cp_nb is not None and ch_nb < cp_nb - NET_BENEFIT_TOLERANCE)


def plot_evaluation(y_true: Any, p: Any, path: str | Path, title: str = "gonogo risk model") -> Path:
    """Write a reliability diagram and a ROC curve side by side to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    y = np.asarray(y_true, dtype=float)
    q = np.asarray(p, dtype=float)
    fig, (ax_rel, ax_roc) = plt.subplots(1, 2, figsize=(10, 4.5))
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    idx = np.clip(np.digitize(q, edges[1:-1]), 0, ECE_BINS - 1)
    mean_p, rate, counts = [], [], []
    for b in range(ECE_BINS):
        mask = idx == b
        if mask.any():
            mean_p.append(q[mask].mean())
            rate.append(y[mask].mean())
            counts.append(int(mask.sum()))
    ax_rel.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax_rel.plot(mean_p, rate, marker="o", label=f"model (ECE {expected_calibration_error(y, q):.3f})")
    for x, r, c in zip(mean_p, rate, counts, strict=True):
        ax_rel.annotate(str(c), (x, r), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax_rel.set_xlabel("predicted failure probability")
    ax_rel.set_ylabel("observed failure rate")
    ax_rel.set_title("Reliability (10 equal-width bins)")
    ax_rel.legend(loc="upper left")
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, q)
        ax_roc.plot(fpr, tpr, label=f"model (AUC {roc_auc_score(y, q):.3f})")
    ax_roc.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_title("ROC")
    ax_roc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
