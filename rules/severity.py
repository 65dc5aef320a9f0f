"""Rule severities, in a module of their own so the policy can name them without the evidence models."""

from __future__ import annotations

from typing import Literal

RuleSeverity = Literal["blocker", "major", "minor"]
SEVERITIES: tuple[RuleSeverity, ...] = ("blocker", "major", "minor")
