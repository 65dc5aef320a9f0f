"""docs/rules.md is generated from the catalog and must be kept up to date."""

from __future__ import annotations

from pathlib import Path

from rules.catalog import CATALOG
from rules.docs import catalog_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"


def test_rules_doc_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == catalog_markdown(), "run: python -m rules.docs > docs/rules.md"


def test_rules_doc_lists_every_rule() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert all(f"| {r.id} | {r.title} |" in text for r in CATALOG)
