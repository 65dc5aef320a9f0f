"""`gonogo history export|import`: exact docs/history.md columns, a lossless round trip, clear errors per bad row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from github_app import db
from github_app.cli import cli
from github_app.db.models import HistoryRow
from scorer.evidence import HISTORY_COLUMNS
from scorer.risk.history import load_history
from tests.simulate_history import simulate_history


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame, _p = simulate_history(300, seed=7)
    path = tmp_path_factory.mktemp("hist") / "history.csv"
    frame.to_csv(path, index=False)
    return path


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _count(url: str) -> int:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(HistoryRow)).scalar() or 0)
    finally:
        engine.dispose()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_import_round_trip(database_url: str, sample: Path, tmp_path: Path, suffix: str) -> None:
    result = _run("history", "import", str(sample), "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "300 new, 0 updated, 0 rejected" in result.output
    out = tmp_path / f"export{suffix}"
    result = _run("history", "export", "--output", str(out), "--database-url", database_url)
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(out, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(out)
    assert tuple(raw.columns) == HISTORY_COLUMNS
    original, exported = load_history(sample), load_history(out)
    original = original.sort_values("deployment_id").reset_index(drop=True)
    exported = exported.sort_values("deployment_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(exported[list(HISTORY_COLUMNS)], original[list(HISTORY_COLUMNS)],
                                  check_dtype=False, check_exact=False, rtol=1e-9)  # fmt: skip
    assert exported["outcome"].notna().sum() == 300
    # importing the export again changes nothing: upsert by deployment_id
    again = _run("history", "import", str(out), "--database-url", database_url)
    assert again.exit_code == 0 and "0 new, 300 updated" in again.output
    assert _count(database_url) == 300


def test_import_reports_each_bad_row_and_keeps_good_ones(database_url: str, sample: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False).head(6)
    frame.loc[1, "created_at"] = "yesterday"
    frame.loc[3, "outcome"] = "exploded"
    frame.loc[4, "coverage"] = "1.7"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    result = CliRunner().invoke(cli, ["history", "import", str(bad), "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "row 3 (deployment_id=d1): created_at 'yesterday' is not an ISO 8601 timestamp" in result.output
    assert "row 5 (deployment_id=d3): outcome 'exploded' must be one of" in result.output
    assert "row 6 (deployment_id=d4): coverage '1.7' is outside 0.0..1.0" in result.output
    assert "3 new, 0 updated, 3 rejected" in result.output
    assert _count(database_url) == 3


def test_import_says_how_many_outcomes_have_no_time(database_url: str, sample: Path, tmp_path: Path) -> None:
    """Outcomes without outcome_at are imported as labels, counted, and stored without a made-up time."""
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False).head(10)
    frame.loc[:3, "outcome_at"] = ""
    untimed = tmp_path / "untimed.csv"
    frame.to_csv(untimed, index=False)
    result = _run("history", "import", str(untimed), "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "10 new" in result.output
    assert "4 rows have an outcome but no outcome_at" in result.output
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(select(HistoryRow.deployment_id, HistoryRow.outcome_at)).all())
    finally:
        engine.dispose()
    assert [stored[f"d{i}"] for i in range(4)] == [None] * 4
    assert all(stored[f"d{i}"] is not None for i in range(4, 10))


def test_import_fails_when_nothing_is_valid(database_url: str, tmp_path: Path) -> None:
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("deployment_id,repository,environment,created_at\nd1,acme/api,production,never\n")
    result = CliRunner().invoke(cli, ["history", "import", str(nothing), "--database-url", database_url])
    assert result.exit_code != 0
    assert "row 2 (deployment_id=d1)" in result.output and "every row has an error" in result.output
    missing = tmp_path / "missing.csv"
    missing.write_text("deployment_id,repository\nd1,acme/api\n")
    result = CliRunner().invoke(cli, ["history", "import", str(missing), "--database-url", database_url])
    assert result.exit_code != 0 and "missing required column(s): environment, created_at" in result.output
    assert _count(database_url) == 0


def test_export_rejects_unknown_extension(database_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["history", "export", "--output", str(tmp_path / "x.json"),
                                      "--database-url", database_url])  # fmt: skip
    assert result.exit_code != 0 and "use a .csv or .parquet file name" in result.output


def test_model_train_registers_and_retrain_from_database(database_url: str, sample: Path) -> None:
    result = _run("model", "train", "--history", str(sample), "--no-prior", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "active: first model of its scope" in result.output
    assert _run("history", "import", str(sample), "--database-url", database_url).exit_code == 0
    result = _run("model", "retrain", "--no-prior", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert '"rows": 300' in result.output and '"version"' in result.output


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("latin1.csv", "deployment_id,repository\n1,caf\xe9/shop\n".encode("latin-1"), "not UTF-8"),
    ("empty.csv", b"", "empty"),
    ("history.parquet", b"deployment_id,repository\n1,acme/shop\n", "not a Parquet file"),
])  # fmt: skip
@pytest.mark.parametrize("command", [["history", "import", "{file}"], ["model", "train", "--history", "{file}",
                                                                       "--output", "{model}"]])  # fmt: skip
def test_a_history_file_that_cannot_be_read_is_named_with_the_reason(
    tmp_path: Path, database_url: str, name: str, content: bytes, reason: str, command: list[str]
) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    args = [a.format(file=file, model=tmp_path / "model.bin") for a in command]
    result = CliRunner().invoke(cli, args, env={"GONOGO_DATABASE_URL": database_url}, catch_exceptions=False)
    assert result.exit_code == 1
    assert f"{file}: cannot be read" in result.output and reason in result.output
