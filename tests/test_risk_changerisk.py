"""Mean ROC AUC on the public ISSTA21 change-risk data beats the published baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import LARGE_CORPUS, LARGE_CORPUS_MISSING

CORPUS: Path = LARGE_CORPUS / "change-risk" / "issta21"


def test_large_corpus_mean_auc_on_issta21_is_at_least_075() -> None:
    """Time-ordered 80/20 split per project; training capped to the 6,000 most recent rows.

    The cap keeps the test near 20 s; it does not flatter the model (recent rows predict the
    test period at least as well as the full history: benchmarks/change_risk_auc.py shows both).
    """
    if not CORPUS.is_dir():
        pytest.skip(LARGE_CORPUS_MISSING)
    from benchmarks.change_risk_auc import run

    table = run(CORPUS, max_train=6000)
    assert table.loc["mean", "gonogo"] >= 0.75, table.round(3).to_string()
    assert table.loc["mean", "gonogo"] > table.loc["mean", "LApredict"]
