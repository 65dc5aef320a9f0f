"""Change rules: size, spread and kind of the change since the last good deployment."""

from __future__ import annotations

import fnmatch
import re

from rules.rule import Check, Rule, at_least, at_most, failed, passed, skipped, unknown
from rules.severity import RuleSeverity
from rules.types import RuleResult
from scorer.assessment import Assessment

_TEST_PATH = re.compile(r"(^|/)(tests?|spec|__tests__|testing)(/|$)|(^|/)test_[^/]*$|_test\.[a-z]+$|\.(spec|test)\.[a-z]+$")
_SOURCE_GLOBS = ("*.py", "*.go", "*.java", "*.kt", "*.js", "*.ts", "*.tsx", "*.jsx", "*.rb", "*.rs", "*.cs", "*.php", "*.scala", "*.c", "*.cc", "*.cpp", "*.swift")  # fmt: skip


def _at_most_seen(a: Assessment, value: float | None, limit: float | None, what: str) -> RuleResult:
    """``at_most`` for a count taken from the changed files, which may be only the first of them.

    When GitHub listed only part of the files, the count is a lower bound: above the limit it fails, below
    it nothing is known (it never passes on the part GitHub showed).
    """
    ch = a.evidence.change
    if not ch.files_truncated or value is None or limit is None:
        return at_most(value, limit, what)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if value > limit:
        return failed(f"at least {shown} {what} (GitHub listed only part of the change), above the limit of "
                      f"{limit:g}", value=value, threshold=limit)  # fmt: skip
    return unknown(f"at least {shown} {what}: GitHub listed only part of the change ({ch.files_changed} of "
                   f"≥ {ch.files_changed} files), so the real figure may be above the limit of {limit:g}", limit)


def _lines(a: Assessment, limit: float | None) -> RuleResult:
    ch = a.evidence.change
    if ch.additions is None and ch.deletions is None:
        return skipped("change size not reported", limit)
    return _at_most_seen(a, (ch.additions or 0) + (ch.deletions or 0), limit, "lines changed")


def _files(a: Assessment, limit: float | None) -> RuleResult:
    return _at_most_seen(a, a.evidence.change.files_changed, limit, "files changed")


def _subsystems(a: Assessment, limit: float | None) -> RuleResult:
    return _at_most_seen(a, a.evidence.change.subsystems, limit, "top-level directories touched")


def _focused(a: Assessment, limit: float | None) -> RuleResult:
    ch = a.evidence.change
    if ch.files_changed is not None and ch.files_changed < 5:
        return skipped("too few files for spread to matter", limit)
    if ch.files_truncated:
        return unknown("the spread of the change is unknown: GitHub listed only part of its files", limit)
    return at_most(None if ch.entropy is None else round(ch.entropy, 3), limit, "change entropy")


def _migration(a: Assessment, limit: float | None) -> RuleResult:
    has = a.evidence.change.has_migration
    if has is None:
        return skipped("migration detection not reported", limit)
    if has:
        return failed("the change includes database migrations", value=True)
    if a.evidence.change.files_truncated:
        return unknown("no migration among the files GitHub listed, but it listed only part of the change", limit)
    return passed("the change includes no database migration", value=False)


def _experience(a: Assessment, limit: float | None) -> RuleResult:
    return at_least(a.evidence.change.author_experience, limit, "earlier commits by the main author")


def _hotspots(a: Assessment, limit: float | None) -> RuleResult:
    spots = a.evidence.change.hotspots
    return at_most(len(spots), limit, "hotspot files touched", details=spots[:10])


def _commits(a: Assessment, limit: float | None) -> RuleResult:
    return at_most(a.evidence.change.commits, limit, "commits since the last deployment")


def _tests_with_code(a: Assessment, limit: float | None) -> RuleResult:
    files = [f.path for f in a.evidence.change.files]
    if not files:
        return skipped("the list of changed files is not known", limit)
    tests = [p for p in files if _TEST_PATH.search(p)]
    sources = [p for p in files if p not in tests and any(fnmatch.fnmatch(p, g) for g in _SOURCE_GLOBS)]
    if not sources:
        return skipped("no source files changed", limit)
    if tests:
        return passed(f"{len(sources)} source files changed with {len(tests)} test files", value=len(tests))
    return failed(f"{len(sources)} source files changed and no test file", value=0, details=sources[:10])


def _rule(
    id_: str, title: str, severity: RuleSeverity, threshold: float | None, why: str, fix: str, check: Check
) -> Rule:
    return Rule(
        id=id_, dimension="change", title=title, severity=severity, why=why, fix=fix,
        check=check, parts=("change",), threshold=threshold, skip_when_not_configured=True,
    )  # fmt: skip


RULES: list[Rule] = [
    _rule(
        "GNG-CHG-001", "Ensure the change is small", "major", 1000,
        "Change size is the strongest single predictor of a failed deployment; big changes are hard to review "
        "and to roll back.",
        "Split the release into smaller deployments, or ship the risky part behind a feature flag.",
        _lines,
    ),
    _rule(
        "GNG-CHG-002", "Ensure the change touches few files", "minor", 50,
        "Many files means many places where something can go wrong.",
        "Deploy in smaller batches.",
        _files,
    ),
    _rule(
        "GNG-CHG-003", "Ensure the change touches few subsystems", "minor", 5,
        "A change across many subsystems couples their failures.",
        "Release subsystems separately where possible.",
        _subsystems,
    ),
    _rule(
        "GNG-CHG-004", "Ensure the change is focused", "minor", 0.95,
        "Edits spread evenly over many files are harder to review than a focused change.",
        "Separate mechanical edits (renames, formatting) from behavioural ones.",
        _focused,
    ),
    _rule(
        "GNG-CHG-005", "Ensure database migrations ship deliberately", "minor", None,
        "Schema migrations cannot be rolled back by redeploying the old code.",
        "Make the migration backward compatible (expand, then contract) and deploy it before the code that needs it.",
        _migration,
    ),
    _rule(
        "GNG-CHG-006", "Ensure the main author knows the code", "minor", 5,
        "Changes by people new to a codebase fail more often; a second pair of eyes helps.",
        "Ask someone familiar with the code to review the change before deploying.",
        _experience,
    ),
    _rule(
        "GNG-CHG-007", "Ensure the change avoids known hotspots", "minor", 3,
        "Files that often needed fixes after deployments are likely to need them again.",
        "Review changes to the hotspot files with extra care and add tests around them.",
        _hotspots,
    ),
    _rule(
        "GNG-CHG-008", "Ensure few commits are deployed at once", "minor", 50,
        "Many commits in one deployment make a failure hard to attribute.",
        "Deploy more often so each deployment carries fewer commits.",
        _commits,
    ),
    _rule(
        "GNG-CHG-009", "Ensure source changes come with test changes", "minor", None,
        "Behaviour changed without a test change is behaviour nobody checked.",
        "Add or update tests alongside the source files listed here.",
        _tests_with_code,
    ),
]
