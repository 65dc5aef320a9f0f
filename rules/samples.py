"""Example evidence for documentation, demos and tests: a clean deployment, and parts to vary it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scorer.evidence import PART_NAMES, Evidence


def clean_evidence(**overrides: Any) -> Evidence:
    """Return a small, green, well-tested deployment (Wednesday 10:00 UTC); part overrides merge over it."""
    data: dict[str, Any] = {
        "deployment_id": "1001", "repository": "octo/shop", "environment": "production", "sha": "a" * 40,
        "created_at": datetime(2025, 6, 4, 10, 0, tzinfo=UTC),
        "checks": {"availability": "ok", "reason": "read", "checks": [
            {"name": "build", "status": "completed", "conclusion": "success"},
            {"name": "lint", "status": "completed", "conclusion": "success"}]},
        "tests": {"availability": "ok", "reason": "read", "total": 240, "passed": 238, "skipped": 2, "files": 2},
        "coverage": {"availability": "ok", "reason": "read", "line_rate": 0.86, "branch_rate": 0.71,
                     "baseline_line_rate": 0.85},
        "security": {"availability": "ok", "reason": "read", "counts": {"low": 2}, "sources": {"dependabot": "ok"}},
        "performance": {"availability": "not_configured", "reason": "no performance results in the artifacts"},
        "change": {"availability": "ok", "reason": "read", "commits": 3, "files_changed": 4, "additions": 90,
                   "deletions": 25, "subsystems": 1, "entropy": 0.5, "authors": 1, "author_experience": 60,
                   "has_migration": False,
                   "files": [{"path": "src/shop/cart.py"}, {"path": "tests/test_cart.py"}]},
        "operational": {"availability": "ok", "reason": "read", "hours_since_last_deploy": 26.0,
                        "deploys_last_24h": 1, "env_failure_rate_30d": 0.04, "hour_utc": 10, "weekday": 2},
    }  # fmt: skip
    for key, value in overrides.items():
        if key in PART_NAMES and isinstance(value, dict):
            # Merge over the clean part, so callers state only what differs.
            data[key] = {**data[key], "availability": "ok", "reason": "read", **value}
        else:
            data[key] = value
    return Evidence.model_validate(data)


def bare_evidence(**parts: Any) -> Evidence:
    """Return evidence where only the given parts are available (``ok`` unless they say otherwise)."""
    data: dict[str, Any] = {
        "deployment_id": "1", "repository": "octo/shop", "environment": "production", "sha": "b" * 40,
        "created_at": datetime(2025, 6, 4, 10, 0, tzinfo=UTC),
    }
    for name in PART_NAMES:
        data[name] = {"availability": "unavailable", "reason": "not collected in this example"}
    for name, value in parts.items():
        data[name] = {"availability": "ok", "reason": "example", **(value or {})}
    return Evidence.model_validate(data)
