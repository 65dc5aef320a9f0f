"""Test reports beyond JUnit XML: every reader turns one file into a TestTally, bounded in size and time."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from scorer.parsers.junit import TestTally, parse_test_report
from scorer.parsers.limits import ArtifactLimits, CappedReader, Deadline

TestParser = Callable[[BinaryIO | CappedReader, str, ArtifactLimits, Deadline], TestTally]

TEST_PARSERS: dict[str, TestParser] = {
    "junit": parse_test_report,
    "trx": parse_test_report,
}
