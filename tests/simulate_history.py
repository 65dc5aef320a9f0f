"""Generate deployment histories (docs/history.md) whose true failure probabilities are known.

The true log-odds mix non-linear effects (saturating change size, a threshold on failed tests),
interactions (a migration shipped out of hours, a large change with low coverage), missing
evidence that carries risk of its own (no test report), and a persistent per-environment
propensity that the model can only learn from earlier outcomes, each known some time after its
deployment (``outcome_at``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_history(
    n: int = 20_000,
    *,
    repositories: int = 3,
    environments: tuple[str, ...] = ("production", "staging"),
    base_logit: float = -3.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (history, true failure probability per row), rows in chronological order."""
    rng = np.random.default_rng(seed)
    repo = rng.integers(0, repositories, n)
    env_idx = rng.integers(0, len(environments), n)
    start = np.datetime64("2023-01-02T00:00:00")
    gaps = rng.exponential(scale=3600 * 24 * 365 / max(n, 1), size=n)
    seconds = np.cumsum(gaps).astype(np.int64)
    created = start + seconds.astype("timedelta64[s]")
    hour = pd.DatetimeIndex(created).hour.to_numpy()
    weekday = pd.DatetimeIndex(created).day_of_week.to_numpy()

    commits = rng.geometric(0.25, n)
    files = np.maximum(1, (commits * rng.lognormal(0.7, 0.8, n)).astype(int))
    additions = (files * rng.lognormal(2.5, 1.1, n)).astype(int)
    deletions = (additions * rng.beta(1.5, 3.0, n)).astype(int)
    subsystems = np.minimum(files, rng.geometric(0.55, n))
    entropy = np.where(files > 1, rng.beta(2.0, 2.0, n), 0.0)
    authors = np.minimum(commits, rng.geometric(0.6, n))
    experience = rng.lognormal(4.0, 1.5, n).astype(int)
    tests_total = rng.integers(50, 2000, n)
    fail_p = rng.beta(0.3, 30.0, n)
    tests_failed = rng.binomial(tests_total, fail_p * (rng.random(n) < 0.25))
    tests_skipped = rng.binomial(tests_total, 0.02)
    flaky = rng.binomial(5, 0.08, n)
    coverage = np.clip(rng.normal(0.75, 0.1, n), 0.2, 1.0)
    coverage_delta = rng.normal(0.0, 0.01, n)
    checks_total = rng.integers(3, 25, n)
    checks_failed = rng.binomial(checks_total, 0.01)
    vulns_high = rng.poisson(0.3, n)
    has_migration = rng.random(n) < 0.12
    regression = rng.normal(2.0, 8.0, n)
    p95 = rng.lognormal(5.0, 0.4, n)
    hours_since = rng.exponential(20.0, n)

    # Missing evidence: absent reports, more often absent in some repositories.
    tests_missing = rng.random(n) < np.where(repo == 0, 0.35, 0.12)
    coverage_missing = tests_missing | (rng.random(n) < 0.15)
    perf_missing = rng.random(n) < 0.5
    change_missing = rng.random(n) < 0.03

    churn = additions + deletions
    env_effect = np.array([rng.normal(0.0, 0.5) for _ in range(repositories * len(environments))])
    logit = (
        base_logit
        + 1.6 * np.tanh(np.log1p(churn) / 4.0 - 1.0)  # saturating size effect
        + 0.35 * np.log1p(files) * (entropy > 0.6)
        + 1.8 * (tests_failed > 2)  # threshold: a couple of failures is noise, more is not
        + 0.8 * tests_missing  # untested deployments fail more often
        + 1.3 * (has_migration & ((hour < 7) | (hour >= 19)))  # interaction: migration out of hours
        + 0.9 * ((np.log1p(churn) > 6.0) & (coverage < 0.65) & ~coverage_missing)  # big, poorly covered
        - 0.25 * np.log1p(experience) + 1.0
        + 0.04 * np.where(perf_missing, 0.0, np.clip(regression, 0, 40))
        + 0.6 * (checks_failed > 0)
        + env_effect[repo * len(environments) + env_idx]
    )
    p = 1.0 / (1.0 + np.exp(-logit))
    failed = rng.random(n) < p
    kinds = rng.choice(np.array(["failure", "rollback", "incident"]), size=n, p=[0.6, 0.3, 0.1])
    outcome = np.where(failed, kinds, "success")
    # When each outcome became known: a deployment status within the hour, a rollback within the day,
    # an incident after hours to days.
    delay_h = np.where(outcome == "success", rng.exponential(0.3, n),
                       np.where(outcome == "incident", rng.exponential(36.0, n), rng.exponential(4.0, n)))
    outcome_at = pd.to_datetime(created).tz_localize("UTC") + pd.to_timedelta(np.round(delay_h * 3600) + 1, unit="s")

    def masked(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        out = values.astype(float)
        out[missing] = np.nan
        return out

    history = pd.DataFrame(
        {
            "deployment_id": [f"d{i}" for i in range(n)],
            "repository": [f"acme/svc-{r}" for r in repo],
            "environment": np.asarray(environments, dtype=object)[env_idx],
            "sha": [f"{rng.integers(0, 2**63):016x}" for _ in range(n)],
            "created_at": pd.to_datetime(created).tz_localize("UTC"),
            "commits": masked(commits, change_missing),
            "files_changed": masked(files, change_missing),
            "additions": masked(additions, change_missing),
            "deletions": masked(deletions, change_missing),
            "subsystems": masked(subsystems, change_missing),
            "entropy": masked(entropy, change_missing),
            "authors": masked(authors, change_missing),
            "author_experience": masked(experience, change_missing),
            "hours_since_last_deploy": hours_since,
            "checks_total": checks_total.astype(float),
            "checks_failed": checks_failed.astype(float),
            "tests_total": masked(tests_total, tests_missing),
            "tests_failed": masked(tests_failed, tests_missing),
            "tests_skipped": masked(tests_skipped, tests_missing),
            "flaky_tests": masked(flaky, tests_missing),
            "coverage": masked(coverage, coverage_missing),
            "coverage_delta": masked(coverage_delta, coverage_missing),
            "vulns_critical": np.zeros(n),
            "vulns_high": vulns_high.astype(float),
            "vulns_medium": np.zeros(n),
            "vulns_low": np.zeros(n),
            "secrets_open": np.zeros(n),
            "p95_latency_ms": masked(p95, perf_missing),
            "p95_regression_pct": masked(regression, perf_missing),
            "error_rate": masked(np.full(n, 0.001), perf_missing),
            "env_failure_rate_30d": np.nan,
            "deploys_last_24h": np.nan,
            "hour_utc": hour.astype(float),
            "weekday": weekday.astype(float),
            "has_migration": has_migration,
            "outcome": outcome.astype(object),
            "outcome_at": outcome_at,
        }
    )
    return history, p
