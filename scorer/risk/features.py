"""Model features from a deployment-history table, using only what was known before each deployment.

Row-local features (size, tests, coverage, security, performance, time) come from the row itself,
which is all known when the decision is requested. History features (the environment's recent
failure rate, how unusual the change size is for the repository) use only rows of the same
repository (and environment) whose ``created_at`` is *strictly earlier*, and only the outcomes that
were known (``outcome_at``) strictly before the row's ``created_at``; rows at the same instant or
later, and outcomes learnt later, never influence a row's features. History features are rates and
counts over fixed windows, never totals since the beginning, so none of them acts as a clock.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scorer.risk.history import coerce_history, failure_labels

RECENT_WINDOW = 20  # labelled deployments looked back at for the recent failure rate
_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9

# Evidence groups whose absence is itself a signal: an unknown is information, not zero.
MISSING_GROUPS: dict[str, tuple[str, ...]] = {
    "change_unknown": ("additions", "deletions", "files_changed"),
    "checks_unknown": ("checks_total",),
    "tests_unknown": ("tests_total",),
    "coverage_unknown": ("coverage",),
    "security_unknown": ("vulns_critical", "vulns_high", "vulns_medium", "vulns_low"),
    "performance_unknown": ("p95_latency_ms", "p95_regression_pct", "error_rate"),
}

LOG_COLUMNS: dict[str, str] = {
    "commits_log": "commits",
    "files_changed_log": "files_changed",
    "additions_log": "additions",
    "deletions_log": "deletions",
    "subsystems_log": "subsystems",
    "directories_log": "directories",
    "authors_log": "authors",
    "author_experience_log": "author_experience",
    "author_recent_experience_log": "author_recent_experience",
    "author_subsystem_experience_log": "author_subsystem_experience",
    "file_developers_log": "file_developers",
    "file_age_days_log": "file_age_days",
    "file_prior_changes_log": "file_prior_changes",
    "lines_before_log": "lines_before",
    "hours_since_last_deploy_log": "hours_since_last_deploy",
    "checks_total_log": "checks_total",
    "tests_total_log": "tests_total",
    "p95_latency_ms_log": "p95_latency_ms",
    "deploys_last_24h_log": "deploys_last_24h",
}
PASS_THROUGH: tuple[str, ...] = (
    "entropy", "coverage", "coverage_delta", "p95_regression_pct", "error_rate", "env_failure_rate_30d",
    "has_migration",
)  # fmt: skip

# The changed files' history counts grow as a repository ages (earlier commits, developers, lines): beside their log, each
# is also given against the median of the repository's latest ``MEDIAN_WINDOW`` earlier deployments, which
# does not drift with age (and is what the live scorer's context of the repository's latest 100 rows holds).
MEDIAN_WINDOW = 100
VS_REPO_MEDIAN: tuple[str, ...] = ("file_prior_changes", "file_developers", "lines_before", "file_age_days")

FEATURES: tuple[str, ...] = (
    *LOG_COLUMNS,
    "churn_log", "churn_vs_repo_median_log", "deleted_share", "churn_per_file_log", "fix_share",
    "relative_additions_log", "relative_deletions_log", "lines_before_per_file_log", "prior_changes_per_file_log",
    *(f"{c}_vs_repo_median_log" for c in VS_REPO_MEDIAN),
    *PASS_THROUGH,
    "checks_failed", "checks_failed_ratio", "tests_failed", "tests_failed_ratio", "tests_skipped_ratio",
    "flaky_tests_ratio", "vulns_weighted_log", "secrets_open",
    *MISSING_GROUPS,
    "hour", "hour_sin", "hour_cos", "weekday", "weekday_sin", "weekday_cos", "weekend", "off_hours",
    "env_recent_failure_rate", "env_failures_30d", "env_failure_rate_30d_history",
    "hours_since_env_failure_log",
)  # fmt: skip

# Features that describe only the change itself: the ones the cold-start prior can learn from
# public commit-level data (ISSTA21 change-risk), where no deployment evidence exists.
CHANGE_FEATURES: tuple[str, ...] = (
    "commits_log", "files_changed_log", "additions_log", "deletions_log", "subsystems_log", "directories_log",
    "authors_log", "author_experience_log", "author_recent_experience_log", "author_subsystem_experience_log",
    "file_developers_log", "file_age_days_log", "file_prior_changes_log", "lines_before_log",
    "relative_additions_log", "relative_deletions_log", "lines_before_per_file_log", "prior_changes_per_file_log",
    *(f"{c}_vs_repo_median_log" for c in VS_REPO_MEDIAN), "fix_share", "churn_log", "churn_vs_repo_median_log", "deleted_share", "churn_per_file_log",
    "entropy", "hour", "hour_sin", "hour_cos", "weekday", "weekday_sin", "weekday_cos", "weekend", "off_hours",
)  # fmt: skip


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    # 0/0 is "nothing ran", which we report as unknown rather than as a perfect score.
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
    return r.where(den > 0, np.nan)


def _history_features(h: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """Per repository+environment, features from outcomes known strictly before each row (h sorted by created_at).

    An outcome counts for a row only once it was known: its ``outcome_at`` is earlier than the row's
    ``created_at``. Outcomes without ``outcome_at`` never count. Everything is a rate or a count over a
    fixed window, never a total since the beginning, so a feature cannot stand in for the date.
    """
    n = len(h)
    rate_recent = np.full(n, np.nan)
    fails_30d = np.zeros(n)
    rate_30d = np.full(n, np.nan)
    since_fail = np.full(n, np.nan)
    times_all = h["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    known_all = h["outcome_at"].to_numpy(dtype="datetime64[ns]")
    has_known = ~np.isnat(known_all)
    known_ns = np.where(has_known, known_all.astype(np.int64), 0)
    keys = h["repository"].astype(str) + "\x1f" + h["environment"].astype(str)
    yv = y.to_numpy()
    for pos in keys.groupby(keys, sort=False).indices.values():
        t = times_all[pos]  # already sorted ascending within the group
        lab = ~np.isnan(yv[pos]) & has_known[pos]
        order = np.argsort(known_ns[pos][lab], kind="stable")
        lt = known_ns[pos][lab][order]  # when each usable outcome became known, ascending
        ly = yv[pos][lab][order]
        lf = np.concatenate([[0.0], np.cumsum(ly)])
        ft = lt[ly == 1.0]
        m = np.searchsorted(lt, t, side="left")  # outcomes known strictly earlier
        lo = np.maximum(m - RECENT_WINDOW, 0)
        k = m - lo
        with np.errstate(divide="ignore", invalid="ignore"):
            rate_recent[pos] = np.where(k > 0, (lf[m] - lf[lo]) / np.maximum(k, 1), np.nan)
        m30 = np.searchsorted(lt, t - 30 * _DAY_NS, side="left")
        f30 = lf[m] - lf[m30]
        n30 = m - m30
        fails_30d[pos] = f30
        rate_30d[pos] = np.where(n30 > 0, f30 / np.maximum(n30, 1), np.nan)
        kf = np.searchsorted(ft, t, side="left")
        last = ft[np.maximum(kf - 1, 0)] if len(ft) else np.zeros_like(t)
        since_fail[pos] = np.where(kf > 0, (t - last) / _HOUR_NS, np.nan)
    return pd.DataFrame(
        {
            "env_recent_failure_rate": rate_recent,
            "env_failures_30d": fails_30d,
            "env_failure_rate_30d_history": rate_30d,
            "hours_since_env_failure_log": np.log1p(np.clip(since_fail, 0, None)),
        },
        index=h.index,
    )


def _repo_median_churn(h: pd.DataFrame, churn: pd.Series, window: int | None = None) -> pd.Series:
    """Median of ``churn`` (or any column) over the repository's strictly earlier deployments (NaN when none).

    With ``window``, over the latest ``window`` of them only.
    """
    out = np.full(len(h), np.nan)
    times = h["created_at"].to_numpy(dtype="datetime64[ns]")
    values = churn.to_numpy(dtype=float)
    for pos in h.groupby("repository", sort=False).indices.values():  # positions, in time order
        c = pd.Series(values[pos])
        rolling = c.expanding(min_periods=1) if window is None else c.rolling(window, min_periods=1)
        prior = rolling.median().shift(1).to_numpy()
        # Rows sharing a timestamp must not see each other: use the value before the first of them.
        t = times[pos]
        out[pos] = prior[np.searchsorted(t, t, side="left")]
    return pd.Series(out, index=h.index)


def build_features(history: pd.DataFrame) -> pd.DataFrame:
    """Return the model features (columns ``FEATURES``) of every row, index aligned with ``history``."""
    h = history if pd.api.types.is_datetime64_any_dtype(history.get("created_at")) else coerce_history(history)
    if any(c not in h.columns for c in ("outcome", "outcome_at", *LOG_COLUMNS.values())):
        h = coerce_history(h)
    original_index = h.index
    h = h.reset_index(drop=True)
    order = np.argsort(h["created_at"].to_numpy(dtype="datetime64[ns]"), kind="stable")
    h = h.iloc[order]
    y = failure_labels(h)

    f = pd.DataFrame(index=h.index)
    for name, col in LOG_COLUMNS.items():
        f[name] = np.log1p(h[col].astype(float).clip(lower=0))
    churn = h["additions"].astype(float) + h["deletions"].astype(float)
    f["churn_log"] = np.log1p(churn.clip(lower=0))
    median = _repo_median_churn(h, churn)
    f["churn_vs_repo_median_log"] = np.log2((churn + 1.0) / (median + 1.0))
    f["deleted_share"] = _ratio(h["deletions"], churn)
    f["churn_per_file_log"] = np.log1p(_ratio(churn, h["files_changed"]))
    f["fix_share"] = _ratio(h["fix_commits"], h["commits"]).clip(upper=1.0)
    # Kamei's relative churn: lines added and deleted per line the files had before the change
    before = h["lines_before"].astype(float).clip(lower=0) + 1.0
    f["relative_additions_log"] = np.log1p(h["additions"].astype(float).clip(lower=0) / before)
    f["relative_deletions_log"] = np.log1p(h["deletions"].astype(float).clip(lower=0) / before)
    # Kamei's normalisation by the number of files: how large and how often changed the touched files are
    f["lines_before_per_file_log"] = np.log1p(_ratio(h["lines_before"].clip(lower=0), h["files_changed"]))
    f["prior_changes_per_file_log"] = np.log1p(_ratio(h["file_prior_changes"].clip(lower=0), h["files_changed"]))
    for col in VS_REPO_MEDIAN:
        v = h[col].astype(float).clip(lower=0)
        f[f"{col}_vs_repo_median_log"] = np.log2((v + 1.0) / (_repo_median_churn(h, v, MEDIAN_WINDOW) + 1.0))
    for col in PASS_THROUGH:
        f[col] = h[col].astype(float)
    f["checks_failed"] = h["checks_failed"].astype(float)
    f["checks_failed_ratio"] = _ratio(h["checks_failed"], h["checks_total"])
    f["tests_failed"] = h["tests_failed"].astype(float)
    f["tests_failed_ratio"] = _ratio(h["tests_failed"], h["tests_total"])
    f["tests_skipped_ratio"] = _ratio(h["tests_skipped"], h["tests_total"])
    f["flaky_tests_ratio"] = _ratio(h["flaky_tests"], h["tests_total"])
    vulns = (
        8.0 * h["vulns_critical"] + 4.0 * h["vulns_high"] + 2.0 * h["vulns_medium"] + 1.0 * h["vulns_low"]
    )
    f["vulns_weighted_log"] = np.log1p(vulns.clip(lower=0))
    f["secrets_open"] = h["secrets_open"].astype(float)
    for name, cols in MISSING_GROUPS.items():
        f[name] = h[list(cols)].isna().all(axis=1).astype(float)

    created = h["created_at"]
    hour = h["hour_utc"].astype(float).fillna(created.dt.hour.astype(float))
    weekday = h["weekday"].astype(float).fillna(created.dt.day_of_week.astype(float))
    f["hour"] = hour
    f["hour_sin"] = np.sin(2 * math.pi * hour / 24.0)
    f["hour_cos"] = np.cos(2 * math.pi * hour / 24.0)
    f["weekday"] = weekday
    f["weekday_sin"] = np.sin(2 * math.pi * weekday / 7.0)
    f["weekday_cos"] = np.cos(2 * math.pi * weekday / 7.0)
    f["weekend"] = (weekday >= 5).astype(float).where(weekday.notna(), np.nan)
    f["off_hours"] = ((hour < 7) | (hour >= 19)).astype(float).where(hour.notna(), np.nan)

    f = f.join(_history_features(h, y))
    f = f.sort_index()[list(FEATURES)].astype(float)
    f.index = original_index
    return f


def chronological_order(history: pd.DataFrame) -> np.ndarray:
    """Return positions that sort ``history`` by created_at (stable), for time-ordered training."""
    created = pd.to_datetime(history["created_at"], utc=True, errors="coerce", format="ISO8601")
    return np.argsort(created.to_numpy(dtype="datetime64[ns]"), kind="stable")
