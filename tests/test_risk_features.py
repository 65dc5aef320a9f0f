"""History validation and leak-free features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scorer.risk.features import FEATURES, build_features
from scorer.risk.history import HistoryError, load_history, validate_history
from tests.simulate_history import simulate_history


def test_shuffling_and_altering_the_future_leaves_past_features_unchanged() -> None:
    """Rows at or after t can be reordered, relabelled and resized without touching earlier features."""
    history, _ = simulate_history(3000, seed=3)
    t = history["created_at"].iloc[2000]
    before = build_features(history)
    future = history["created_at"] >= t
    rng = np.random.default_rng(0)
    altered = history.copy()
    altered.loc[future, "outcome"] = rng.permutation(altered.loc[future, "outcome"].to_numpy())
    altered.loc[future, "additions"] = altered.loc[future, "additions"] * 50
    altered.loc[future, "outcome"] = np.where(rng.random(future.sum()) < 0.9, "incident", "success")
    altered = pd.concat([altered[~future], altered[future].sample(frac=1.0, random_state=1)])
    after = build_features(altered).loc[before.index]
    past = history.index[~future]
    pd.testing.assert_frame_equal(before.loc[past], after.loc[past])
    assert not before.loc[history.index[future]].equals(after.loc[history.index[future]])


def test_rows_at_the_same_instant_do_not_see_each_other() -> None:
    """An outcome recorded at the same created_at as a deployment is not 'before' it."""
    ts = ["2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"]
    h = pd.DataFrame({
        "deployment_id": list("abcd"), "repository": "r", "environment": "prod", "created_at": ts,
        "additions": [10, 20, 30, 40], "deletions": 0, "files_changed": 1,
        "outcome": ["failure", "failure", "success", "success"],
        "outcome_at": ["2024-01-01T10:30:00Z", "2024-01-01T11:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"],
    })
    f = build_features(h)
    assert f["env_recent_failure_rate"].tolist()[1:3] == [1.0, 1.0]  # only row a is before b and c
    assert f["env_recent_failure_rate"].iloc[3] == pytest.approx(2 / 3)
    assert np.isnan(f["env_recent_failure_rate"].iloc[0])  # nothing before the first deployment


def test_failure_rate_is_per_repository_and_environment() -> None:
    """Failures in staging do not raise production's recent failure rate."""
    h = pd.DataFrame({
        "deployment_id": list("abc"), "repository": "r", "environment": ["staging", "staging", "prod"],
        "created_at": ["2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"],
        "outcome": ["failure", "failure", "success"],
        "outcome_at": ["2024-01-01T10:05:00Z", "2024-01-01T11:05:00Z", "2024-01-01T12:05:00Z"],
    })
    f = build_features(h)
    assert np.isnan(f["env_recent_failure_rate"].iloc[2])
    assert f["env_recent_failure_rate"].iloc[1] == 1.0


def test_an_outcome_counts_only_once_it_was_known() -> None:
    """An incident found after later deployments is invisible to them; an outcome without outcome_at never counts."""
    h = pd.DataFrame({
        "deployment_id": list("abcde"), "repository": "r", "environment": "prod",
        "created_at": ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z", "2024-01-03T10:00:00Z",
                       "2024-01-10T10:00:00Z", "2024-01-11T10:00:00Z"],
        "outcome": ["incident", "success", "success", "failure", None],
        # a's incident was opened a week later; d's failure has no known time
        "outcome_at": ["2024-01-08T09:00:00Z", "2024-01-02T10:10:00Z", "2024-01-03T10:10:00Z", None, None],
    })
    f = build_features(h)
    assert np.isnan(f["env_recent_failure_rate"].iloc[1])  # a's outcome is not known yet
    assert f["env_recent_failure_rate"].iloc[2] == 0.0  # only b's success is known
    assert np.isnan(f["hours_since_env_failure_log"].iloc[2])
    assert f["env_recent_failure_rate"].iloc[3] == pytest.approx(1 / 3)  # a's incident is known by now
    assert f["hours_since_env_failure_log"].iloc[3] == pytest.approx(np.log1p(49.0))  # since it became known
    assert f["env_recent_failure_rate"].iloc[4] == pytest.approx(1 / 3)  # d's failure has no outcome_at


def test_history_features_do_not_grow_with_the_age_of_the_history() -> None:
    """The same deployment pattern two years later gets the same history features: no feature is a clock."""
    n = 4 * 730  # every 6 hours for two years, every fifth one failing, each outcome known an hour later
    created = pd.date_range("2023-01-01", periods=n, freq="6h", tz="UTC")
    h = pd.DataFrame({
        "deployment_id": [f"d{i}" for i in range(n)], "repository": "r", "environment": "prod",
        "created_at": created, "additions": 10, "deletions": 2, "files_changed": 1,
        "outcome": ["failure" if i % 5 == 0 else "success" for i in range(n)],
        "outcome_at": created + pd.Timedelta(hours=1),
    })
    f = build_features(h)
    history_columns = [c for c in FEATURES if c.startswith(("env_", "hours_since_env", "churn_vs"))]
    month_3, month_21 = 4 * 90, 4 * 630  # same position in the five-deployment cycle
    pd.testing.assert_series_equal(f[history_columns].iloc[month_3], f[history_columns].iloc[month_21],
                                   check_names=False)


def history_errors(tmp_path: Path, csv_text: str) -> str:
    """The errors load_history refuses this CSV with, one a line."""
    csv = tmp_path / "h.csv"
    csv.write_text(csv_text)
    with pytest.raises(HistoryError) as err:
        load_history(csv)
    return "\n".join(err.value.errors)


def test_outcome_at_is_validated(tmp_path: Path) -> None:
    """A malformed outcome_at, one without an outcome, or one before created_at is reported with its row."""
    text = history_errors(tmp_path, (
        "deployment_id,repository,environment,created_at,outcome,outcome_at\n"
        "a,r,prod,2024-01-01T10:00:00Z,success,2024-01-01T10:05:00Z\n"
        "b,r,prod,2024-01-01T11:00:00Z,failure,soon\n"
        "c,r,prod,2024-01-01T12:00:00Z,,2024-01-01T12:05:00Z\n"
        "d,r,prod,2024-01-01T13:00:00Z,failure,2024-01-01T12:00:00Z\n"
    ))  # fmt: skip
    assert "row 3 (deployment_id=b): outcome_at 'soon' is not an ISO 8601 timestamp" in text
    assert "row 4 (deployment_id=c): outcome_at is set but outcome is empty" in text
    assert "row 5 (deployment_id=d): outcome_at '2024-01-01T12:00:00Z' is before created_at" in text
    assert "row 2" not in text


def test_features_are_logs_ratios_indicators_and_cyclic_time() -> None:
    """Sizes are log-scaled, unknown tests are flagged (not zero) and hours are cyclic."""
    h = pd.DataFrame({
        "deployment_id": ["a", "b"], "repository": "r", "environment": "prod",
        "created_at": ["2024-01-06T23:00:00Z", "2024-01-08T09:00:00Z"],
        "additions": [4000, 100], "deletions": [120, 0], "files_changed": [40, 2],
        "tests_total": [200, None], "tests_failed": [5, None], "outcome": ["success", None],
    })
    f = build_features(h)
    assert list(f.columns) == list(FEATURES)
    assert f["churn_log"].iloc[0] == pytest.approx(np.log1p(4120))
    assert f["tests_failed_ratio"].iloc[0] == pytest.approx(0.025)
    assert f["tests_unknown"].tolist() == [0.0, 1.0]
    assert np.isnan(f["tests_failed_ratio"].iloc[1])
    assert f["weekend"].tolist() == [1.0, 0.0]
    assert f["hour_sin"].iloc[0] ** 2 + f["hour_cos"].iloc[0] ** 2 == pytest.approx(1.0)
    assert f["churn_vs_repo_median_log"].iloc[1] == pytest.approx(np.log2(101 / 4121))


def test_validate_history_reports_each_bad_row(tmp_path: Path) -> None:
    """Every bad cell is reported with its row number and deployment id; nothing is guessed."""
    text = history_errors(tmp_path, (
        "deployment_id,repository,environment,created_at,additions,coverage,outcome,has_migration\n"
        "a,r,prod,2024-01-01T10:00:00Z,10,0.8,success,false\n"
        "b,r,prod,yesterday,ten,1.5,exploded,maybe\n"
        "a,r,prod,2024-01-01T12:00:00Z,-3,,,\n"
    ))  # fmt: skip
    assert "row 3 (deployment_id=b): created_at 'yesterday' is not an ISO 8601 timestamp" in text
    assert "row 3 (deployment_id=b): additions 'ten' is not a number" in text
    assert "coverage '1.5' is outside 0.0..1.0" in text
    assert "outcome 'exploded' must be one of" in text
    assert "has_migration 'maybe' must be true or false" in text
    assert "row 4 (deployment_id=a): deployment_id 'a' repeats row 2" in text
    assert "row 4 (deployment_id=a): additions '-3' must not be negative" in text
    assert validate_history(pd.DataFrame({"deployment_id": ["x"]})) == [
        "missing required column(s): repository, environment, created_at; see docs/history.md"
    ]


def test_load_history_reads_csv_and_parquet_alike(tmp_path: Path) -> None:
    """CSV and Parquet of the same table load to the same typed frame."""
    history, _ = simulate_history(50, seed=4)
    csv, pq = tmp_path / "h.csv", tmp_path / "h.parquet"
    history.assign(created_at=history["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(csv, index=False)
    history.to_parquet(pq)
    a, b = load_history(csv), load_history(pq)
    pd.testing.assert_frame_equal(build_features(a), build_features(b), check_exact=False, atol=1e-9)


def test_history_counts_are_also_given_against_the_latest_deployments_median() -> None:
    """Earlier commits, developers and lines of the files grow with a repository's age; against the median of the
    repository's latest 100 earlier deployments they do not, and rows older than those cannot move them."""
    n = 400
    created = pd.date_range("2023-01-01", periods=n, freq="6h", tz="UTC")
    grow = np.arange(n, dtype=float)  # a count that grows with the age of the repository
    h = pd.DataFrame({
        "deployment_id": [f"d{i}" for i in range(n)], "repository": "r", "environment": "prod",
        "created_at": created, "additions": 10, "deletions": 2, "files_changed": 1, "lines_before": 100 + grow,
        "file_prior_changes": grow, "file_developers": 3, "author_experience": 2 * grow, "file_age_days": 5.0,
    })
    f = build_features(h)
    rel = f["file_prior_changes_vs_repo_median_log"]
    # row i against the median of rows i-100..i-1, i.e. i - 50.5: the ratio shrinks as counts grow
    assert rel.iloc[300] == pytest.approx(np.log2((300 + 1) / (249.5 + 1)))
    assert np.isnan(rel.iloc[0])  # nothing earlier to compare with
    assert f["file_developers_vs_repo_median_log"].iloc[200] == 0.0  # the usual number of developers
    assert f["relative_additions_log"].iloc[0] == pytest.approx(np.log1p(10 / 101))
    changed = h.copy()
    changed.loc[:150, ["file_prior_changes", "lines_before", "file_age_days"]] = 10_000.0
    g = build_features(changed)
    cols = [c for c in FEATURES if c.endswith("_vs_repo_median_log") and c != "churn_vs_repo_median_log"]
    pd.testing.assert_frame_equal(g[cols].iloc[252:], f[cols].iloc[252:])  # rows 0..150 are out of their window
