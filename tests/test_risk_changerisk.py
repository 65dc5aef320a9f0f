"""On real public change-risk data, through `gonogo model`, the default pipeline holds its own against the plain baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorer.evidence import change_directories, is_fix_message
from tests.helpers import LARGE_CORPUS, LARGE_CORPUS_MISSING

CORPUS: Path = LARGE_CORPUS / "change-risk" / "issta21"


def test_large_corpus_default_pipeline_ranks_with_the_plain_logistic_baseline_and_is_calibrated() -> None:
    """The smallest ISSTA21 project, time split, schema columns only, prior built without the project.

    The full six-project figures come from benchmarks/change_risk_auc.py; this keeps one project in the suite.
    """
    if not CORPUS.is_dir():
        pytest.skip(LARGE_CORPUS_MISSING)
    from benchmarks.change_risk_auc import run

    table = run(CORPUS, ("jdt",), prior_rows=5000)
    row = table.loc["jdt"]
    assert row["gonogo"] >= row["plain_lr"] - 0.02, table.to_string()
    assert row["gonogo"] > row["published_LApredict"], table.to_string()
    assert row["gonogo_ece"] <= 0.05, table.to_string()


def test_directories_and_fix_commits_come_from_paths_and_messages() -> None:
    assert change_directories(["api/orders.py", "api/app.py", "db/migrations/1.sql", "README.md"]) == 3
    assert [is_fix_message(m) for m in ("Fix the crash on empty carts", "bugfix: retry", "Fixes #12",
                                        "Prefix the cache keys", "Add pagination", None)] == [
        True, True, True, False, False, False]
