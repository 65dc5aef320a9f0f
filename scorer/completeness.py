"""How much of each evidence source was read, and which checks stand in for missing test reports.

Many repositories run their tests in a check (``test``, ``ci / unit``, ``pytest``, ``go test``) and
upload no report. Such checks are weaker evidence than a report: they say the suite passed or
failed, not how many tests ran, so the tests source then counts as half read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scorer.evidence import Availability, CheckResult, Evidence

# Share of the tests source credited when only test checks, no reports, were read.
TEST_CHECKS_SHARE = 0.5
# Share of a source credited when some of its files were refused and it does not count the rest.
INCOMPLETE_SHARE = 0.5
# Words that name a test run in check names; matched as whole words, case-insensitively.
_TEST_WORDS = re.compile(
    r"(?<![a-z0-9])(tests?|testing|unit|unittests?|integration|e2e|end-to-end|acceptance|smoke|pytest|jest|mocha|"
    r"vitest|karma|rspec|minitest|phpunit|junit|surefire|gotest|go test|cargo test|ctest|tox|nox|spec|specs|"
    r"cypress|playwright)(?![a-z0-9])",
    re.IGNORECASE,
)


def is_test_check_name(name: str) -> bool:
    """Return whether a check's name says it runs tests ("test", "ci / unit", "pytest (3.12)", "go test")."""
    return bool(_TEST_WORDS.search(name.replace("_", " ")))


@dataclass(frozen=True)
class TestChecks:
    """The checks that stand in for test reports, split by how they ended."""

    __test__ = False  # not a pytest class

    passed: list[CheckResult] = field(default_factory=list)
    failed: list[CheckResult] = field(default_factory=list)
    pending: list[CheckResult] = field(default_factory=list)
    # finished without running the tests (skipped, neutral): neither a pass nor a failure
    not_run: list[CheckResult] = field(default_factory=list)

    @property
    def all(self) -> list[CheckResult]:
        return [*self.failed, *self.pending, *self.not_run, *self.passed]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.all]


def stand_in_test_checks(evidence: Evidence) -> TestChecks | None:
    """Return the required or test-named checks when no test report was found, else None.

    Only used in place of reports: when reports exist (or could not be read) they are the evidence.
    """
    if evidence.tests.availability is not Availability.NOT_CONFIGURED or not evidence.checks.ok:
        return None
    required = set(evidence.checks.required)
    chosen = [
        c for c in evidence.checks.checks
        if c.name in required or is_test_check_name(c.name)
    ]  # fmt: skip
    if not chosen:
        return None
    return TestChecks(
        passed=[c for c in chosen if c.passed],
        failed=[c for c in chosen if c.failed],
        pending=[c for c in chosen if not c.completed],
        not_run=[c for c in chosen if c.not_run],
    )


def part_read_share(evidence: Evidence, name: str) -> float:
    """Return the share (0..1) of one evidence source that was read: 1 read, 0 missing, between for stand-ins."""
    part = evidence.parts()[name]
    if part.ok:
        return 1.0
    if part.availability is Availability.INCOMPLETE:
        # Some files read, others refused: the share read, where the part counts its files, else half.
        read = evidence.tests.files if name == "tests" else 0
        refused = len(part.refused)
        return round(read / (read + refused), 3) if read and refused else INCOMPLETE_SHARE
    if name == "tests":
        stand_in = stand_in_test_checks(evidence)
        # a skipped or neutral test check read nothing: only a test check that ran and finished counts
        if stand_in is not None and not stand_in.pending and (stand_in.passed or stand_in.failed):
            return TEST_CHECKS_SHARE
    return 0.0


def first_deployment(evidence: Evidence) -> bool:
    """Return whether gonogo's history was read and holds no earlier deployment or outcome for the environment."""
    op = evidence.operational
    return op.ok and op.hours_since_last_deploy is None and op.env_failure_rate_30d is None and not op.deploys_last_24h
