"""Load and validate a deployment-history table (docs/history.md) from CSV or Parquet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scorer.evidence import FAILED_OUTCOMES, HISTORY_COLUMNS, OUTCOMES

log = logging.getLogger(__name__)

IDENTITY_COLUMNS: tuple[str, ...] = ("deployment_id", "repository", "environment", "sha")
INT_COLUMNS: tuple[str, ...] = (
    "commits", "files_changed", "additions", "deletions", "subsystems", "authors", "author_experience",
    "directories", "fix_commits", "file_developers", "file_prior_changes", "author_subsystem_experience",
    "lines_before", "checks_total", "checks_failed", "tests_total", "tests_failed", "tests_skipped", "flaky_tests",
    "vulns_critical", "vulns_high", "vulns_medium", "vulns_low", "secrets_open", "deploys_last_24h",
    "hour_utc", "weekday",
)  # fmt: skip
FLOAT_COLUMNS: tuple[str, ...] = (
    "entropy", "hours_since_last_deploy", "coverage", "coverage_delta", "p95_latency_ms",
    "p95_regression_pct", "error_rate", "env_failure_rate_30d", "file_age_days", "author_recent_experience",
)  # fmt: skip
REQUIRED_COLUMNS: tuple[str, ...] = ("deployment_id", "repository", "environment", "created_at")
_RANGES: dict[str, tuple[float, float]] = {
    "entropy": (0.0, 1.0),
    "coverage": (0.0, 1.0),
    "env_failure_rate_30d": (0.0, 1.0),
    "error_rate": (0.0, 1.0),
    "hour_utc": (0, 23),
    "weekday": (0, 6),
}
_TRUE = {"true", "1", "1.0", "yes", "t", "y"}
_FALSE = {"false", "0", "0.0", "no", "f", "n"}
MAX_ERRORS = 50


class HistoryError(ValueError):
    """The history file cannot be used; ``errors`` lists what to fix, one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        shown = errors[:MAX_ERRORS]
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__("Invalid deployment history:\n" + "\n".join(shown) + more)
        self.errors = errors


def read_history_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet history file as strings/objects, without interpreting values."""
    p = Path(path)
    if not p.is_file():
        raise HistoryError([f"{p}: file not found; pass a CSV or Parquet file with the columns of docs/history.md"])
    suffix = p.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(p)
        if suffix in {".csv", ".txt", ""}:
            # Read as text so validation can report the exact bad cell instead of a dtype guess.
            return pd.read_csv(p, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise HistoryError([f"{p}: cannot be read: the CSV is not UTF-8; save it as UTF-8"]) from None
    except pd.errors.EmptyDataError:
        raise HistoryError([f"{p}: cannot be read: the file is empty; it needs the header row of docs/history.md"]) from None
    except ValueError as exc:  # pandas' ParserError and pyarrow's ArrowInvalid: not the format its name says
        kind = "a Parquet file" if suffix in {".parquet", ".pq"} else "CSV"
        raise HistoryError([f"{p}: cannot be read: not {kind} ({str(exc).splitlines()[0]})"]) from None
    raise HistoryError([f"{p}: unsupported file type {suffix!r}; use .csv or .parquet"])


def _row_label(df: pd.DataFrame, i: int) -> str:
    dep = df["deployment_id"].iloc[i] if "deployment_id" in df.columns else None
    return f"row {i + 2}" + (f" (deployment_id={dep})" if dep not in (None, "") else "")


def _blank_mask(col: pd.Series) -> pd.Series:
    """Vectorised ``_blank`` over a column."""
    mask = col.isna()
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return mask
    return mask | (col.astype(str).str.strip() == "")


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v.strip() == "")


def validate_history(df: pd.DataFrame) -> list[str]:
    """Return one human-readable error per bad cell or missing column (empty list when valid)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        return [f"missing required column(s): {', '.join(missing)}; see docs/history.md"]
    if len(df) == 0:
        return ["the history has no rows"]
    raw = df.reset_index(drop=True)
    found: list[tuple[int, str]] = []  # (row position, message), sorted by row at the end

    def report(mask: pd.Series, message: object) -> None:
        for i in np.flatnonzero(mask.to_numpy()):
            found.append((int(i), message(i) if callable(message) else str(message)))

    blank = {c: _blank_mask(raw[c]) for c in raw.columns}
    for col in REQUIRED_COLUMNS:
        report(blank[col], f"{col} is empty; it is required")
    ids = raw["deployment_id"].astype(str)
    dup = raw["deployment_id"].notna() & ~blank["deployment_id"] & ids.duplicated(keep="first")
    first_pos = {v: i for i, v in reversed(list(enumerate(ids)))}
    report(dup, lambda i: f"deployment_id {ids[i]!r} repeats row {first_pos[ids[i]] + 2}; ids must be unique")
    ts = pd.to_datetime(raw["created_at"].where(~blank["created_at"], None), utc=True, errors="coerce",
                        format="ISO8601")
    report(ts.isna() & ~blank["created_at"], lambda i: (
        f"created_at {raw['created_at'][i]!r} is not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)"))
    for col in INT_COLUMNS + FLOAT_COLUMNS:
        if col not in raw.columns:
            continue
        cells = raw[col]
        num = pd.to_numeric(cells.where(~blank[col], np.nan), errors="coerce").astype(float)
        given = ~blank[col]
        report(given & num.isna(), lambda i, c=col: f"{c} {raw[c][i]!r} is not a number (leave the cell empty if unknown)")
        ok = given & num.notna()
        report(ok & ~np.isfinite(num.fillna(0.0)), lambda i, c=col: f"{c} {raw[c][i]!r} is not finite")
        fin = ok & np.isfinite(num.fillna(0.0))
        if col in INT_COLUMNS:
            report(fin & (num != np.floor(num)), lambda i, c=col: f"{c} {raw[c][i]!r} must be a whole number")
            if col not in {"hour_utc", "weekday"}:
                report(fin & (num < 0), lambda i, c=col: f"{c} {raw[c][i]!r} must not be negative")
        if col in _RANGES:
            lo, hi = _RANGES[col]
            report(fin & ((num < lo) | (num > hi)), lambda i, c=col, lo=lo, hi=hi: f"{c} {raw[c][i]!r} is outside {lo}..{hi}")
    if "has_migration" in raw.columns:
        mig = raw["has_migration"]
        good = mig.map(lambda v: isinstance(v, bool | np.bool_) or str(v).strip().lower() in _TRUE | _FALSE)
        report(~blank["has_migration"] & ~good, lambda i: f"has_migration {mig[i]!r} must be true or false")
    if "outcome" in raw.columns:
        out = raw["outcome"]
        report(~blank["outcome"] & ~out.map(lambda v: str(v).strip() in OUTCOMES),
               lambda i: f"outcome {out[i]!r} must be one of {', '.join(OUTCOMES)} or empty")
    if "outcome_at" in raw.columns:
        known = pd.to_datetime(raw["outcome_at"].where(~blank["outcome_at"], None), utc=True, errors="coerce",
                               format="ISO8601")
        report(known.isna() & ~blank["outcome_at"], lambda i: (
            f"outcome_at {raw['outcome_at'][i]!r} is not an ISO 8601 timestamp (e.g. 2024-05-03T09:30:00Z)"))
        no_outcome = blank["outcome"] if "outcome" in raw.columns else pd.Series(True, index=raw.index)
        report(known.notna() & no_outcome, "outcome_at is set but outcome is empty; give both or neither")
        report(known.notna() & ts.notna() & (known < ts), lambda i: (
            f"outcome_at {raw['outcome_at'][i]!r} is before created_at {raw['created_at'][i]!r}; an outcome "
            "cannot be known before the deployment was requested"))
    found.sort(key=lambda t: t[0])
    return [f"{_row_label(raw, i)}: {msg}" for i, msg in found]


def coerce_history(df: pd.DataFrame) -> pd.DataFrame:
    """Return a typed copy: numbers as float (NaN = unknown), created_at as UTC, schema columns present."""
    out = df.copy()
    for col in HISTORY_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in IDENTITY_COLUMNS:
        blank = _blank_mask(out[col])
        out[col] = out[col].astype("object").where(~blank, None).map(lambda v: None if v is None else str(v))
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True, errors="coerce", format="ISO8601")
    for col in INT_COLUMNS + FLOAT_COLUMNS:
        col_values = out[col]
        if not pd.api.types.is_numeric_dtype(col_values):
            col_values = col_values.where(~_blank_mask(col_values), np.nan)
        out[col] = pd.to_numeric(col_values, errors="coerce").astype(float)
    mig = out["has_migration"].map(
        lambda v: np.nan if _blank(v) else float(v) if isinstance(v, bool | np.bool_ | int | float)
        else 1.0 if str(v).strip().lower() in _TRUE else 0.0 if str(v).strip().lower() in _FALSE else np.nan
    )
    out["has_migration"] = mig.astype(float)
    out["outcome"] = out["outcome"].map(lambda v: None if _blank(v) else str(v).strip()).astype("object")
    known = out["outcome_at"]
    if not pd.api.types.is_datetime64_any_dtype(known):
        known = known.where(~_blank_mask(known), None)
    out["outcome_at"] = pd.to_datetime(known, utc=True, errors="coerce", format="ISO8601")
    return out


def missing_outcome_times(history: pd.DataFrame) -> int:
    """Count labelled rows without ``outcome_at``: their outcomes feed no history feature."""
    labelled = history["outcome"].map(lambda v: not _blank(v))
    return int((labelled & history["outcome_at"].isna()).sum()) if "outcome_at" in history.columns else int(
        labelled.sum())


def load_history(path: str | Path) -> pd.DataFrame:
    """Read, validate and type a history file; raise ``HistoryError`` listing every bad row."""
    df = read_history_file(path)
    errors = validate_history(df)
    if errors:
        raise HistoryError(errors)
    out = coerce_history(df)
    log.info("history.loaded", extra={"path": str(path), "rows": len(out)})
    return out


def failure_labels(history: pd.DataFrame) -> pd.Series:
    """Map outcomes to 1.0 (failure, rollback, incident), 0.0 (success) or NaN (unknown yet)."""
    return history["outcome"].map(
        lambda v: np.nan if _blank(v) else 1.0 if v in FAILED_OUTCOMES else 0.0 if v == "success" else np.nan
    ).astype(float)
