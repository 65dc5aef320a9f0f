"""The built-in rule catalog, composed explicitly from the per-dimension modules."""

from __future__ import annotations

from rules.checks import change, operational, performance, quality, security
from rules.rule import Rule

CATALOG: tuple[Rule, ...] = (
    *quality.RULES,
    *security.RULES,
    *performance.RULES,
    *operational.RULES,
    *change.RULES,
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in CATALOG}
if len(RULES_BY_ID) != len(CATALOG):  # pragma: no cover - guards the catalog itself
    raise RuntimeError("duplicate rule ids in the catalog")


def get_rule(rule_id: str) -> Rule:
    """Return the rule with this id; raise KeyError naming the known ids' pattern."""
    try:
        return RULES_BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule id {rule_id!r}; see docs/rules.md for the catalog") from None
