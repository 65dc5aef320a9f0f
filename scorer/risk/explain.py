"""Per-prediction drivers in plain words, exact for the model that made the prediction."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd

from scorer.assessment import Driver, ModelQuality, RiskEstimate
from scorer.risk.lean import LeanBlend, LeanRiskModel, expit

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Scorer(Protocol):
    """Anything that yields exact additive credits for feature rows."""

    def contributions(self, features: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray]: ...


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _count(row: pd.Series, log_name: str) -> int | None:
    v = _num(row.get(log_name))
    return None if v is None else round(math.expm1(v))


def _pct(v: float) -> str:
    return f"{v:.0%}" if v >= 0.01 or v == 0 else f"{v:.1%}"


def _flag(yes: str, no: str) -> Callable[[pd.Series, str], str]:
    return lambda row, name: yes if _num(row.get(name)) == 1.0 else no


def _counted(template: str) -> Callable[[pd.Series, str], str]:
    def text(row: pd.Series, name: str) -> str:
        n = _count(row, name)
        return template.format(n=n) if n is not None else f"{name.removesuffix('_log').replace('_', ' ')} unknown"
    return text


def _valued(template: str, unknown: str) -> Callable[[pd.Series, str], str]:
    def text(row: pd.Series, name: str) -> str:
        v = _num(row.get(name))
        return template.format(v=v) if v is not None else unknown
    return text


def _valued_log(template: str, unknown: str) -> Callable[[pd.Series, str], str]:
    """A log1p-scaled feature in words, its value back on its own scale."""
    def text(row: pd.Series, name: str) -> str:
        v = _num(row.get(name))
        return template.format(v=math.expm1(v)) if v is not None else unknown
    return text


def _vs_median(what: str) -> Callable[[pd.Series, str], str]:
    """A count against the median of the repository's earlier deployments (a log2 ratio)."""
    def text(row: pd.Series, name: str) -> str:
        v = _num(row.get(name))
        return f"{what}: {2.0**v:.1f}x this repository's median" if v is not None else f"{what} unknown"
    return text


def _churn(row: pd.Series, name: str) -> str:
    churn = _count(row, "churn_log")
    if churn is None:
        return "change size unknown"
    ratio = _num(row.get("churn_vs_repo_median_log"))
    text = f"{churn:,} lines changed"
    if ratio is not None:
        x = 2.0**ratio
        text += f", {x:.0f}x this repository's median" if x >= 2 else f", {x:.1f}x this repository's median"
    return text


def _hour(row: pd.Series, name: str) -> str:
    h = _num(row.get("hour"))
    return f"deployed at {int(h):02d}:00 UTC" if h is not None else "time of day unknown"


def _weekday(row: pd.Series, name: str) -> str:
    d = _num(row.get("weekday"))
    return f"deployed on a {_WEEKDAYS[int(d) % 7]}" if d is not None else "weekday unknown"


def _since_failure(row: pd.Series, name: str) -> str:
    v = _num(row.get(name))
    if v is None:
        return "no earlier failure known in this environment"
    return f"{math.expm1(v):,.0f} h since the last failure in this environment became known"


def _hours_since_deploy(row: pd.Series, name: str) -> str:
    v = _num(row.get(name))
    return f"{math.expm1(v):,.0f} h since the last deployment" if v is not None else "time since last deployment unknown"


def _latency(row: pd.Series, name: str) -> str:
    v = _num(row.get(name))
    return f"p95 latency {math.expm1(v):,.0f} ms" if v is not None else "no performance results"


def _churn_per_file(row: pd.Series, name: str) -> str:
    v = _num(row.get(name))
    return f"{math.expm1(v):,.0f} lines changed per file" if v is not None else "lines per file unknown"


def _ratio(template: str, unknown: str) -> Callable[[pd.Series, str], str]:
    def text(row: pd.Series, name: str) -> str:
        v = _num(row.get(name))
        return template.format(p=_pct(v)) if v is not None else unknown
    return text


DESCRIBE: dict[str, Callable[[pd.Series, str], str]] = {
    "commits_log": _counted("{n:,} commits since the last successful deployment"),
    "files_changed_log": _counted("{n:,} files changed"),
    "additions_log": _counted("{n:,} lines added"),
    "deletions_log": _counted("{n:,} lines deleted"),
    "subsystems_log": _counted("{n:,} top-level directories touched"),
    "authors_log": _counted("{n:,} authors in the change"),
    "directories_log": _counted("{n:,} directories touched"),
    "fix_share": _ratio("{p} of the commits fix something", "whether the change fixes something unknown"),
    "author_experience_log": _counted("main author has {n:,} earlier commits in this repository"),
    "author_recent_experience_log": _valued_log("main author's recent experience {v:,.1f} (earlier commits, "
                                                "each weighted 1/(1 + years ago))", "recent experience unknown"),
    "author_subsystem_experience_log": _counted("main author has {n:,} earlier commits in the touched subsystems"),
    "file_developers_log": _counted("{n:,} developers changed these files before"),
    "file_age_days_log": _valued_log("the files were last changed {v:,.0f} days before, on average",
                                     "history of the changed files unknown"),
    "file_prior_changes_log": _counted("{n:,} earlier commits changed these files"),
    "lines_before_log": _counted("the changed files had {n:,} lines before"),
    "lines_before_per_file_log": _valued_log("the changed files had {v:,.0f} lines each before, on average",
                                             "lines of the files before the change unknown"),
    "prior_changes_per_file_log": _valued_log("{v:,.1f} earlier commits per changed file",
                                              "history of the changed files unknown"),
    "file_prior_changes_vs_repo_median_log": _vs_median("earlier commits to the changed files"),
    "file_developers_vs_repo_median_log": _vs_median("developers of the changed files"),
    "lines_before_vs_repo_median_log": _vs_median("lines the changed files had"),
    "file_age_days_vs_repo_median_log": _vs_median("days since the changed files were last changed"),
    "relative_additions_log": _valued_log("{v:.2f} lines added per line the files had before",
                                          "lines of the files before the change unknown"),
    "relative_deletions_log": _valued_log("{v:.2f} lines deleted per line the files had before",
                                          "lines of the files before the change unknown"),
    "hours_since_last_deploy_log": _hours_since_deploy,
    "checks_total_log": _counted("{n:,} checks on the commit"),
    "tests_total_log": _counted("{n:,} tests ran"),
    "p95_latency_ms_log": _latency,
    "deploys_last_24h_log": _counted("{n:,} deployments to this environment in the last 24 h"),
    "churn_log": _churn,
    "churn_vs_repo_median_log": _churn,
    "deleted_share": _ratio("{p} of the changed lines are deletions", "share of deletions unknown"),
    "churn_per_file_log": _churn_per_file,
    "entropy": _valued("change spread over files {v:.2f} (0 = one file, 1 = evenly spread)", "change spread unknown"),
    "coverage": _valued("line coverage {v:.0%}", "no coverage report"),
    "coverage_delta": _valued("coverage {v:+.1%} since the last deployment", "coverage change unknown"),
    "p95_regression_pct": _valued("p95 latency {v:+.0f}% against the baseline", "no performance baseline"),
    "error_rate": _valued("error rate {v:.2%} in the performance test", "performance error rate unknown"),
    "env_failure_rate_30d": _ratio("{p} of deployments to this environment failed in 30 days (reported)",
                                   "30-day failure rate not reported"),
    "has_migration": _flag("includes a database migration", "no database migration"),
    "checks_failed": _valued("{v:.0f} failed checks", "check results unknown"),
    "checks_failed_ratio": _ratio("{p} of checks failed", "check results unknown"),
    "tests_failed": _valued("{v:.0f} failed tests", "no test results"),
    "tests_failed_ratio": _ratio("{p} of tests failed", "no test results"),
    "tests_skipped_ratio": _ratio("{p} of tests skipped", "no test results"),
    "flaky_tests_ratio": _ratio("{p} of tests flaky", "no test results"),
    "vulns_weighted_log": lambda row, name: (
        "open vulnerabilities unknown" if _num(row.get(name)) is None
        else "no open vulnerabilities" if _num(row.get(name)) == 0
        else f"open vulnerabilities (severity-weighted score {_count(row, name)})"
    ),
    "secrets_open": _valued("{v:.0f} open secret-scanning alerts", "secret scanning unknown"),
    "change_unknown": _flag("size of the change unknown", "size of the change known"),
    "checks_unknown": _flag("no check results", "check results present"),
    "tests_unknown": _flag("no test results", "test results present"),
    "coverage_unknown": _flag("no coverage report", "coverage report present"),
    "security_unknown": _flag("no security scan results", "security scan results present"),
    "performance_unknown": _flag("no performance results", "performance results present"),
    "hour": _hour,
    "hour_sin": _hour,
    "hour_cos": _hour,
    "weekday": _weekday,
    "weekday_sin": _weekday,
    "weekday_cos": _weekday,
    "weekend": _flag("deployed at the weekend", "deployed on a working day"),
    "off_hours": _flag("deployed outside 07:00-19:00 UTC", "deployed within 07:00-19:00 UTC"),
    "env_recent_failure_rate": _ratio("{p} of the last 20 deployments to this environment failed",
                                      "no earlier outcomes in this environment"),
    "env_failures_30d": _valued("{v:.0f} failed deployments to this environment in 30 days",
                                "failures in 30 days unknown"),
    "env_failure_rate_30d_history": _ratio("{p} of deployments to this environment failed in 30 days",
                                           "no outcomes in this environment in 30 days"),
    "hours_since_env_failure_log": _since_failure,
}


def describe(feature: str, row: pd.Series) -> str:
    """Say in plain words what ``feature`` is for this row (without its contribution)."""
    fn = DESCRIBE.get(feature)
    if fn is not None:
        return fn(row, feature)
    v = _num(row.get(feature))
    return f"{feature} = {v:.3g}" if v is not None else f"{feature} unknown"


def _as_frame(row: pd.Series | pd.DataFrame) -> pd.DataFrame:
    if isinstance(row, pd.DataFrame):
        if len(row) != 1:
            raise ValueError(f"explain takes one row; got {len(row)}")
        return row
    return row.to_frame().T


def _scorer_names(model: Any) -> tuple[Any, list[str]]:
    inner = getattr(model, "estimator", model)  # a TrainedRiskModel wraps the estimator
    if isinstance(inner, LeanRiskModel | LeanBlend):
        return inner, list(inner.feature_names)
    # imported here: a lean model (what `gonogo model explain` loads) is scored without scikit-learn
    from scorer.risk.blend import BlendedRiskModel
    from scorer.risk.model import RiskModel

    if isinstance(inner, BlendedRiskModel):
        return inner, inner.feature_names
    if isinstance(inner, RiskModel):
        return inner, list(getattr(inner, "feature_names_in_", []))
    raise TypeError(f"cannot explain a {type(inner).__name__}; pass a RiskModel, BlendedRiskModel or TrainedRiskModel")


def contributions_for(model: Any, features: pd.DataFrame) -> tuple[np.ndarray, float, np.ndarray, list[str]]:
    """Return (credits, base log-odds, log-odds, feature names) for feature rows under ``model``."""
    inner, names = _scorer_names(model)
    if isinstance(inner, LeanRiskModel | LeanBlend):
        credits, base, z = inner.frame_contributions(features)
    elif hasattr(inner, "contributions_array"):  # a RiskModel
        from scorer.risk.blend import model_frame

        credits, base, z = inner.contributions_array(model_frame(inner, features).to_numpy(dtype=float))
    else:
        credits, base, z = inner.contributions(features)
    return credits, base, z, names


def explain(model: Any, row: pd.Series | pd.DataFrame, top: int | None = None) -> list[Driver]:
    """Return the row's drivers, largest first; their contributions sum to log-odds minus base log-odds."""
    frame = _as_frame(row)
    return _drivers(frame, *contributions_for(model, frame), top=top)


def _drivers(frame: pd.DataFrame, credits: np.ndarray, _base: float, _z: np.ndarray, names: list[str],
             top: int | None) -> list[Driver]:
    values = frame.reindex(columns=names).iloc[0]
    order = np.argsort(-np.abs(credits[0]), kind="stable")
    drivers: list[Driver] = []
    for j in order:
        c = float(credits[0, j])
        if c == 0.0:
            continue
        name = names[j]
        v = _num(values.get(name))
        drivers.append(Driver(feature=name, value=v, contribution=c, text=f"{describe(name, values)}: {c:+.2f}"))
        if top is not None and len(drivers) >= top:
            break
    return drivers


def risk_estimate(model: Any, row: pd.Series | pd.DataFrame, *, top: int = 5, version: str | None = None,
                  source: str = "model") -> RiskEstimate:
    """Return the probability of failure for one row with its top drivers."""
    frame = _as_frame(row)
    credits, base, z, names = contributions_for(model, frame)
    meta = getattr(model, "metadata", {}) or {}
    return RiskEstimate(
        probability=float(expit(z[0])),
        source="prior" if source == "prior" else "model",
        model_version=version or meta.get("version"),
        base_rate=float(expit(base)),
        drivers=_drivers(frame, credits, base, z, names, top=top),
        # the prior's figures describe public commit data, not this repository's deployments
        quality=model_quality(meta.get("metrics")) if source != "prior" else None,
    )


def model_quality(metrics: dict[str, Any] | None) -> ModelQuality | None:
    """The held-out figures a reviewer needs beside a risk number (None without validation metrics)."""
    if not metrics or not metrics.get("n"):
        return None
    caught = (metrics.get("catch_rate") or {}).get("0.1")
    return ModelQuality(deployments=int(metrics["n"]), roc_auc=metrics.get("roc_auc"),
                        catch_rate_10=None if caught is None else float(caught), ece=metrics.get("ece"))
