"""Stream JUnit-style test reports (JUnit/xUnit/NUnit XML and TRX) into merged totals.

One expat pass per file, no DOM: memory stays flat however large the report. Producers covered:
pytest, surefire/failsafe, jest-junit, mocha, go-junit-report, bazel, catch2, nextest, scalatest,
NUnit 2/3, xUnit.net v1/v2 and Visual Studio TRX.
"""

from __future__ import annotations

import itertools
import re
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from scorer.evidence import Availability, Provenance, TestCase, TestsPart
from scorer.parsers.limits import ArtifactLimits, ArtifactRejected, CappedReader, Deadline
from scorer.parsers.xmlsafe import feed, new_parser

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MESSAGE_CHARS = 500
MAX_REPORT_SECONDS = 7 * 24 * 3600
FOLD_BATCH = 1 << 15  # passing-test ids buffered (8 bytes each) before they are folded into PassCounts
SMALL_IDS = 4096  # distinct passing ids counted in a dict before PassCounts moves to numpy arrays
_NAMELESS = itertools.count()  # identities for failing cases without a name

# outcome codes kept small: they are stored per failing case
PASSED, FAILED, ERRORED, SKIPPED, FLAKY = "passed", "failed", "errored", "skipped", "flaky"
_SKIP_STATUS = frozenset({"skipped", "disabled", "notrun", "ignored"})


def _float(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        number = float(value)
    except ValueError:
        return 0.0
    return number if number >= 0 and number != float("inf") else 0.0


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _trx_duration(value: str | None) -> float:
    # TRX durations look like 00:00:01.2345678
    if not value:
        return 0.0
    try:
        hours, minutes, seconds = value.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


def _test_key(classname: str, name: str) -> int:
    """Return the 64-bit id under which attempts of one test are matched within one report file."""
    return hash((classname, name))


_MASK64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # odd: multiplying by it is a bijection on 64-bit ids


def _scoped_key(key: int, scope: int) -> int:
    """Return the id of a test within one retry scope (a signed 64-bit int, as numpy computes it)."""
    mixed = ((key & _MASK64) * _MIX ^ (scope & _MASK64)) & _MASK64
    return mixed - (1 << 64) if mixed >= 1 << 63 else mixed


def _scoped_keys(keys: npt.NDArray[np.int64], scope: int) -> npt.NDArray[np.int64]:
    """Vector form of ``_scoped_key``: the same ids, computed with wrapping 64-bit arithmetic."""
    import numpy as np

    mixed = keys.view(np.uint64) * np.uint64(_MIX) ^ np.uint64(scope & _MASK64)
    return mixed.view(np.int64)


# a name part that says "this is a retry": test-results-rerun, junit-retry.xml, attempt-2/, rerun_1
_RETRY_MARK = re.compile(r"(?:^|[-_. ])(?:re-?runs?|retry|retries|retried|attempts?)(?:[-_. ]?\d+)?(?=$|[-_. ])",
                         re.IGNORECASE)


def _unmarked(part: str) -> str:
    """Drop the retry marks from one name (an artifact name or one path segment)."""
    return _RETRY_MARK.sub("", part).strip("-_. ")


def retry_scope(run: str, artifact: str, path: str) -> str:
    """Return the place a report's tests ran, so that only attempts in one place excuse each other.

    Two report files share a scope when they come from the same workflow run (``run``; empty when
    unknown, as for a local folder), the same artifact and the same path inside it, once the marks of
    a retry are left out of the artifact name and of each path segment: ``test-results`` and
    ``test-results-rerun``, ``junit.xml`` and ``junit-rerun.xml``, ``attempt-1/junit.xml`` and
    ``attempt-2/junit.xml`` are one place; ``test-results-linux`` and ``test-results-windows`` are two.
    """
    segments = [_unmarked(s) for s in path.replace("\\", "/").split("/")]
    return "\x00".join((run, _unmarked(artifact), "/".join(s for s in segments if s)))


class PassCounts:
    """Passing attempts per test id, for the first ``cap`` distinct ids in the order they were first seen.

    A dict of 200,000 ids costs about 17 MB in Python ints and slots; three int64 numpy arrays sorted
    by id cost 24 bytes an id. The parser appends each passing id to ``pending`` (one C call per
    test) and the buffer is folded in batches, with the same result as counting the ids one by one:
    ids already kept gain their attempts, new ids join in the order they were first seen until
    ``cap`` ids are kept, and later ones are not remembered. Up to ``small_ids`` ids live in a plain
    dict (insertion order is first-seen order), so a small report never imports numpy.
    """

    _ids: npt.NDArray[np.int64]  # kept ids, sorted (once the counts outgrow the dict)
    _counts: npt.NDArray[np.int64]  # passing attempts of each kept id
    _rank: npt.NDArray[np.int64]  # when each kept id was first seen (0 = first)

    def __init__(self, cap: int, small_ids: int = SMALL_IDS) -> None:
        self.cap = cap
        self.small_ids = small_ids
        self.pending = array("q")  # ids of passing attempts not folded yet, in attempt order
        self._small: dict[int, int] | None = {}  # id -> passing attempts, until it would pass small_ids

    def __len__(self) -> int:
        self.fold_pending()
        return len(self._small) if self._small is not None else len(self._ids)

    def fold_if_batch_full(self) -> None:
        """Fold the buffer once it holds FOLD_BATCH ids, so it stays small however long the report."""
        if len(self.pending) >= FOLD_BATCH:
            self.fold_pending()

    def fold_pending(self) -> None:
        """Count the buffered attempts and empty the buffer."""
        if not self.pending:
            return
        small = self._small
        if small is not None and len(small) + len(self.pending) <= self.small_ids:
            room = self.cap - len(small)
            for key in self.pending:
                if key in small:
                    small[key] += 1
                elif room > 0:
                    small[key] = 1
                    room -= 1
            del self.pending[:]  # emptied in place: the parser holds its append method
            return
        import numpy as np  # here: small reports never pay for importing numpy

        self._to_arrays()
        attempts = np.array(self.pending, dtype=np.int64)
        del self.pending[:]
        kept = len(self._ids)
        if kept >= self.cap:
            # full: only attempts of kept ids count, so their order no longer matters; sorted needles
            # make the binary searches cache-friendly (about 4x faster)
            attempts.sort()
            slot = self._slots(attempts)
            np.add.at(self._counts, slot[slot >= 0], 1)
            return
        # distinct ids, counts and first attempts by a stable sort (np.unique's hash table needs
        # several times the buffer's size); the stable sort keeps each id's first attempt first
        by_id = np.argsort(attempts, kind="stable")
        ordered = attempts[by_id]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        counts = np.diff(np.append(starts, len(ordered)))
        first_seen = np.argsort(by_id[starts])
        self.add_counts(ordered[starts][first_seen], counts[first_seen])

    def _to_arrays(self) -> None:
        """Move the dict's counts into the sorted arrays (once; later folds use the arrays)."""
        if self._small is None:
            return
        import numpy as np

        ids, counts = self._first_seen()
        by_id = np.argsort(ids)
        self._ids, self._counts, self._rank = ids[by_id], counts[by_id], by_id.astype(np.int64)
        self._small = None

    def _first_seen(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Return the kept ids and their counts as arrays, in the order the ids were first seen."""
        import numpy as np

        if self._small is not None:
            size = len(self._small)
            return np.fromiter(self._small, np.int64, size), np.fromiter(self._small.values(), np.int64, size)
        first_seen = np.argsort(self._rank)
        return self._ids[first_seen], self._counts[first_seen]

    def _slots(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Return the index in the kept arrays of each id, or -1 where it is not kept."""
        import numpy as np

        kept = len(self._ids)
        if not kept:
            return np.full(len(ids), -1, np.intp)
        slot = np.searchsorted(self._ids, ids)
        slot[slot == kept] = 0
        return np.where(self._ids[slot] == ids, slot, -1)

    def add_counts(self, ids: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        """Add ``counts`` passing attempts to each of ``ids`` (distinct, first seen first)."""
        import numpy as np

        self._to_arrays()
        slot = self._slots(ids)
        hit = slot >= 0
        self._counts[slot[hit]] += counts[hit]  # no slot twice: the ids are distinct
        kept = len(self._ids)
        room = self.cap - kept
        if room <= 0 or hit.all():
            return
        new = ~hit
        ids, counts = ids[new][:room], counts[new][:room]
        by_id = np.argsort(ids)
        at = np.searchsorted(self._ids, ids[by_id])
        # one array at a time: the peak is the kept arrays plus one copy
        self._ids = np.insert(self._ids, at, ids[by_id])
        self._counts = np.insert(self._counts, at, counts[by_id])
        self._rank = np.insert(self._rank, at, kept + by_id)

    def counts_of(self, ids: list[int]) -> list[int]:
        """Return the passing attempts of each id (0 when it never passed or was not kept)."""
        self.fold_pending()
        if self._small is not None:
            return [self._small.get(key, 0) for key in ids]
        if not len(self._ids):
            return [0] * len(ids)
        import numpy as np

        slot = self._slots(np.array(ids, dtype=np.int64))
        return np.where(slot >= 0, self._counts[slot], 0).tolist()  # type: ignore[no-any-return]

    def merge(self, other: PassCounts, scope: int | None = None) -> None:
        """Fold another tally's counts into these, its ids in the order it first saw them.

        With ``scope``, each id is first turned into its id within that retry scope (``_scoped_key``).
        """
        self.fold_pending()
        other.fold_pending()
        mine, theirs = self._small, other._small
        if mine is not None and theirs is not None and len(mine) + len(theirs) <= self.small_ids:
            room = self.cap - len(mine)
            for key, n in theirs.items():
                if scope is not None:
                    key = _scoped_key(key, scope)
                if key in mine:
                    mine[key] += n
                elif room > 0:
                    mine[key] = n
                    room -= 1
            return
        ids, counts = other._first_seen()
        self.add_counts(ids if scope is None else _scoped_keys(ids, scope), counts)


@dataclass
class _Scope:
    """One retry scope of a merged tally: its key's hash, and the report files seen in it."""

    hash: int
    artifact: str  # the artifact name of its first file ("" for a file of a folder)
    files: list[str]  # labels of its report files (the first few)


_SCOPE_FILES = 5  # report files named per scope
_PASS_LOOKUPS = 100_000  # (failing test, scope) pairs looked up to say where a failing test passed


@dataclass
class TestTally:
    """Running totals for one report file, or for many merged with ``merge``.

    A test that failed and passed is flaky (counted once, as passed) only when both attempts were in one
    retry scope (``retry_scope``): the same report file, or files that are a retry of each other. A
    failure beside a pass in another scope (another matrix leg, job or workflow) stays a failure, and
    says where the test passed.
    """

    __test__ = False  # not a pytest class

    limits: ArtifactLimits = field(default_factory=ArtifactLimits)
    cases: int = 0  # test case elements seen (each rerun attempt counts)
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    files: int = 0
    formats: set[str] = field(default_factory=set)
    # rerun tracking. passed_ids: passing attempts by test id (_test_key), of this file or of all merged
    # files; scoped_ids: passing attempts by test id within its scope (_scoped_key), once files are merged.
    # bad: by test id (one file) or scoped id (merged): [failed, errored, details, last outcome, test id,
    # scope index (-1: this file's own)]; details end with the label of the file the test first failed in
    passed_ids: PassCounts = field(init=False, repr=False, compare=False)
    scoped_ids: PassCounts = field(init=False, repr=False, compare=False)
    bad: dict[int, list[Any]] = field(default_factory=dict)
    bad_untracked: int = 0  # failing attempts beyond max_tracked_tests (counted, not deduplicated)
    marked_flaky: list[TestCase] = field(default_factory=list)  # producer said flaky (surefire flakyFailure)
    marked_flaky_count: int = 0
    scopes: list[_Scope] = field(default_factory=list)
    scope_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.passed_ids = PassCounts(self.limits.max_tracked_tests)
        self.scoped_ids = PassCounts(self.limits.max_tracked_tests)

    def add(self, classname: str, name: str, outcome: str, file: str | None, line: int | None,
            message: str) -> None:
        """Count one executed test case attempt."""
        self.cases += 1
        # nameless cases cannot be matched across attempts: each failing one gets an identity no other
        # case shares (a process-wide counter), and nameless passes are not remembered at all
        key = _test_key(classname, name) if name else hash(("", "", next(_NAMELESS)))
        if outcome == PASSED or outcome == FLAKY:
            self.passed += 1
            if name:
                self.passed_ids.pending.append(key)
            if outcome == FLAKY:
                self.marked_flaky_count += 1
                if len(self.marked_flaky) < self.limits.max_findings:
                    self.marked_flaky.append(TestCase(name=name, classname=classname, file=file, line=line,
                                                      message=message[:MESSAGE_CHARS], outcome="flaky"))
        elif outcome == SKIPPED:
            self.skipped += 1
        else:
            if outcome == FAILED:
                self.failed += 1
            else:
                self.errored += 1
            entry = self.bad.get(key)
            if entry is None:
                if len(self.bad) >= self.limits.max_tracked_tests:
                    self.bad_untracked += 1
                    return
                detail = ((classname, name, file, line, message[:MESSAGE_CHARS], "")
                          if len(self.bad) < self.limits.max_findings else None)  # fmt: skip
                entry = self.bad[key] = [0, 0, detail, outcome, key, -1]
            entry[0 if outcome == FAILED else 1] += 1
            entry[3] = outcome

    def merge(self, other: TestTally, scope: str, label: str = "", artifact: str = "") -> None:
        """Fold one report file's tally into this one.

        ``scope`` says where its tests ran (``retry_scope``): its failures are excused only by passes in
        the same scope. ``label`` names the file and ``artifact`` its artifact in what is reported.
        """
        if other.scopes:
            raise ValueError("merge one report file's tally at a time: a merged tally has lost its files' scopes")
        self.cases += other.cases
        self.passed += other.passed
        self.failed += other.failed
        self.errored += other.errored
        self.skipped += other.skipped
        self.duration_s += other.duration_s
        self.files += other.files
        self.formats |= other.formats
        at = self.scope_index.get(scope)
        if at is None:
            at = self.scope_index[scope] = len(self.scopes)
            self.scopes.append(_Scope(hash=hash(scope), artifact=artifact, files=[]))
        where = self.scopes[at]
        if artifact and where.artifact != artifact and _unmarked(artifact) == artifact:
            where.artifact = artifact  # name a leg by its first attempt, not by its rerun
        if label and label not in where.files and len(where.files) < _SCOPE_FILES:
            where.files.append(label)
        cap = self.limits.max_tracked_tests
        self.passed_ids.merge(other.passed_ids)
        self.scoped_ids.merge(other.passed_ids, where.hash)
        for key, entry in other.bad.items():
            scoped = _scoped_key(key, where.hash)
            detail = entry[2] if entry[2] is None else (*entry[2][:5], label)
            mine_entry = self.bad.get(scoped)
            if mine_entry is not None:
                mine_entry[0] += entry[0]
                mine_entry[1] += entry[1]
                mine_entry[3] = entry[3]
                if mine_entry[2] is None:
                    mine_entry[2] = detail
            elif len(self.bad) < cap:
                self.bad[scoped] = [entry[0], entry[1], detail, entry[3], key, at]
            else:
                self.bad_untracked += entry[0] + entry[1]
        self.bad_untracked += other.bad_untracked
        self.marked_flaky_count += other.marked_flaky_count
        room = max(self.limits.max_findings - len(self.marked_flaky), 0)
        self.marked_flaky.extend(
            c.model_copy(update={"where": f"fails, then passes on a retry in {label}"}) if label and not c.where else c
            for c in other.marked_flaky[:room])

    def _passes(self) -> list[tuple[int, int]]:
        """Return, per entry of ``bad``: passing attempts in its own scope, and anywhere."""
        entries = list(self.bad.values())
        anywhere = self.passed_ids.counts_of([e[4] for e in entries])
        in_scope = self.scoped_ids.counts_of(list(self.bad)) if self.scopes else [0] * len(entries)
        return [(n_any if e[5] < 0 else n_scope, n_any) for e, n_scope, n_any in zip(entries, in_scope, anywhere,
                                                                                   strict=True)]

    def _retried_in(self, entry: list[Any]) -> str:
        """Say where a test excused as flaky failed and where it passed on a retry."""
        failed_in = entry[2][5]
        if entry[5] < 0 or not failed_in:
            return ""
        others = [f for f in self.scopes[entry[5]].files if f != failed_in]
        if not others:  # a rerun plugin's report, or the same file uploaded again by a re-run attempt
            return f"fails, then passes on a retry in {failed_in}"
        return f"fails in {failed_in}, passes on a retry in {' or '.join(others)}"

    def _passed_elsewhere(self, entry: list[Any], budget: list[int]) -> str:
        """Say where a failing test failed and in which other scopes it passed (first few)."""
        own = entry[5]
        if own < 0:
            return ""
        failed_in, artifact = entry[2][5], self.scopes[own].artifact
        others = [i for i in range(len(self.scopes)) if i != own]
        if budget[0] < len(others):
            return f"fails on {failed_in}, passes in another report"
        budget[0] -= len(others)
        counts = self.scoped_ids.counts_of([_scoped_key(entry[4], self.scopes[i].hash) for i in others])
        passed_in = [self.scopes[i] for i, n in zip(others, counts, strict=True) if n]
        if not passed_in:
            return f"fails on {failed_in}, passes in another report"
        # artifact names say it best ("test-results-windows"), when they tell the two apart
        by_artifact = bool(artifact) and all(s.artifact and s.artifact != artifact for s in passed_in)
        names = [s.artifact if by_artifact else (s.files[0] if s.files else "?") for s in passed_in]
        names = list(dict.fromkeys(names))
        more = f" and {len(names) - 2} more" if len(names) > 2 else ""
        return f"fails on {artifact if by_artifact else failed_in}, passes on {', '.join(names[:2])}{more}"

    def to_part(self, provenance: list[Provenance]) -> TestsPart:
        """Resolve reruns (failed then passed in one scope = flaky, counted once as passed) and build the part."""
        passed, failed, errored = self.passed, self.failed, self.errored
        failures: list[TestCase] = []
        flaky: list[TestCase] = list(self.marked_flaky)
        cap = self.limits.max_findings
        budget = [_PASS_LOOKUPS]
        for entry, (n_passed, n_anywhere) in zip(self.bad.values(), self._passes(), strict=True):
            n_failed, n_errored, detail, last = entry[:4]
            if n_passed:
                # the same test failed in one attempt and passed in another of the same scope: flaky, one pass
                failed -= n_failed
                errored -= n_errored
                passed -= n_passed - 1
                if detail is not None and len(flaky) < cap:
                    cls, name, file, line, message = detail[:5]
                    flaky.append(TestCase(name=name, classname=cls, file=file, line=line, message=message,
                                          outcome="flaky", where=self._retried_in(entry)))
            elif detail is not None and len(failures) < cap:
                cls, name, file, line, message = detail[:5]
                failures.append(TestCase(name=name, classname=cls, file=file, line=line, message=message,
                                         outcome="errored" if last == ERRORED else "failed",
                                         where=self._passed_elsewhere(entry, budget) if n_anywhere else ""))
        total = passed + failed + errored + self.skipped
        return TestsPart(
            availability=Availability.OK,
            reason=f"{self.files} test report(s) merged ({', '.join(sorted(self.formats)) or 'junit'})",
            provenance=provenance,
            total=total, passed=passed, failed=failed, errored=errored, skipped=self.skipped,
            duration_s=round(self.duration_s, 3), failures=failures, flaky=flaky, files=self.files,
        )

    @property
    def flaky_count(self) -> int:
        """Tests marked flaky by the producer or seen failing then passing in the same scope."""
        return self.marked_flaky_count + sum(1 for n, _ in self._passes() if n)


class _Handler:
    """Expat callbacks for every supported test-report dialect; the root element picks the dialect."""

    def __init__(self, tally: TestTally, what: str) -> None:
        self.tally = tally
        self.what = what
        self.dialect: str | None = None
        self.depth = 0
        self.case: dict[str, str] | None = None
        self.outcome = PASSED
        self.message = ""
        self.want_text = False
        self.text: list[str] = []
        self.suite_depth = 0
        self.suite_names: list[str] = [""]
        self.case_time = 0.0
        self.time_cases = True  # sum case times only while no enclosing suite reports its own
        self.root_time: float | None = None
        self.top_suite_time = 0.0
        self.top_suites_timed = 0
        self.declared = [0, 0, 0, 0]  # tests, failures, errors, skipped of top-level suites
        # the top-level suite being read: its name, the failures and errors it declares, the failing attempts
        # counted before it began
        self.suite_mark: tuple[str, int, int] = ("", 0, 0)
        # top-level suites that declare failures or errors but list no failing test case (a fixture that failed
        # around the tests, a module that failed to build): (name, failures and errors declared). Producers count
        # failure elements or test cases, so only a suite that lists none at all is known to hide one.
        self.unlisted: list[tuple[str, int]] = []
        # what a TRX or NUnit 3 run says of itself when it failed as a whole (a crashed test host, a fixture's
        # tear-down): a failure even when no listed test failed
        self.run_failed: str | None = None
        self.parser: Any = None
        self.note_pass = tally.passed_ids.pending.append

    # --- dispatch on the root -------------------------------------------------------------
    def start_root(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit(":", 1)[-1]
        if local in ("testsuites", "testsuite"):
            self.dialect = "junit"
            self.parser.StartElementHandler = self.start_junit
            self.parser.EndElementHandler = self.end_junit
            self.start_junit(local, attrs)
        elif local in ("test-results", "test-run", "test-suite"):
            self.dialect = "nunit"
            self.parser.StartElementHandler = self.start_nunit
            self.parser.EndElementHandler = self.end_nunit
            self.root_time = _float(attrs.get("duration")) or None
            if local == "test-run" and (attrs.get("result") or "").lower() == "failed":
                label = attrs.get("label")
                self.run_failed = "the test run's result is Failed" + (f" ({label})" if label else "")
        elif local in ("assemblies", "assembly"):
            self.dialect = "xunit"
            self.parser.StartElementHandler = self.start_xunit
            self.parser.EndElementHandler = self.end_xunit
            self.start_xunit(local, attrs)
        elif local == "TestRun":
            self.dialect = "trx"
            self.parser.StartElementHandler = self.start_trx
            self.parser.EndElementHandler = self.end_trx
        else:
            raise ArtifactRejected(
                f"{self.what} is XML but not a test report (root element <{name}>, expected <testsuites>, "
                "<testsuite>, <test-run>, <test-results>, <test-suite>, <assemblies> or <TestRun>)"
            )

    def _capture_text(self, on: bool) -> None:
        # the text handler is installed only while a failure message is wanted: whitespace between
        # the elements of a large report would otherwise cost a Python call each
        self.want_text = on
        self.parser.CharacterDataHandler = self.text_data if on else None

    def text_data(self, data: str) -> None:
        if self.want_text and sum(len(t) for t in self.text) < MESSAGE_CHARS:
            self.text.append(data)

    def _finish_case(self, classname: str, name: str, file: str | None, line: int | None) -> None:
        message = self.message or "".join(self.text).strip()
        self.tally.add(classname, name, self.outcome, file, line, message)
        self.case = None
        if self.want_text:
            self._capture_text(False)
        if self.text:
            self.text = []
        self.message = ""

    # --- JUnit ----------------------------------------------------------------------------
    def start_junit(self, name: str, attrs: dict[str, str]) -> None:
        # hot path: called for every element of reports that can reach hundreds of megabytes
        if name == "testcase":
            self.case = attrs
            self.outcome = SKIPPED if attrs.get("status") in _SKIP_STATUS else PASSED
            if self.time_cases:
                self.case_time += _float(attrs.get("time"))
            return
        case = self.case
        if case is not None:
            if name == "failure" or name == "error":
                new = FAILED if name == "failure" else ERRORED
                if self.outcome not in (FAILED, ERRORED) or new == ERRORED:
                    self.outcome = new
                if not self.message:
                    self.message = attrs.get("message") or ""
                    if not self.message:
                        self._capture_text(True)
            elif name == "skipped":
                if self.outcome in (PASSED, FLAKY):
                    self.outcome = SKIPPED
                    self.message = attrs.get("message") or ""
            elif (name == "flakyFailure" or name == "flakyError") and self.outcome == PASSED:
                self.outcome = FLAKY
                self.message = attrs.get("message") or ""
            return
        if name == "testsuite":
            self.suite_depth += 1
            self.suite_names.append(attrs.get("name") or "")
            if self.suite_depth == 1:
                time = attrs.get("time")
                if time:
                    self.top_suite_time += _float(time)
                    self.top_suites_timed += 1
                    self.time_cases = False
                for i, key in enumerate(("tests", "failures", "errors", "skipped")):
                    self.declared[i] += _int(attrs.get(key)) or 0
                bad = max(_int(attrs.get("failures")) or 0, 0) + max(_int(attrs.get("errors")) or 0, 0)
                self.suite_mark = (attrs.get("name") or "", bad, self.tally.failed + self.tally.errored)
        elif name == "testsuites" and attrs.get("time"):
            self.root_time = _float(attrs.get("time"))
            self.time_cases = False

    def end_junit(self, name: str) -> None:
        if name == "testcase":
            case = self.case
            if case is None:
                return
            # without a classname, the suite tells apart same-named tests (go subpackages, nested suites)
            classname = case.get("classname") or case.get("class") or self.suite_names[-1]
            if self.outcome is PASSED:
                tally = self.tally
                tally.cases += 1
                tally.passed += 1
                test_name = case.get("name")
                if test_name:
                    # _test_key inlined, and one C append: the id is counted when the buffer is folded
                    self.note_pass(hash((classname, test_name)))
                self.case = None
                return
            self._finish_case(classname, case.get("name") or "", case.get("file"), _int(case.get("line")))
        elif self.want_text and (name == "failure" or name == "error"):
            self._capture_text(False)
        elif name == "testsuite":
            self.suite_depth -= 1
            if len(self.suite_names) > 1:
                self.suite_names.pop()
            if self.suite_depth == 0:
                suite, declared, before = self.suite_mark
                listed = self.tally.failed + self.tally.errored - before
                if declared and not listed:
                    self.unlisted.append((suite, declared))

    # --- NUnit 2 and 3 --------------------------------------------------------------------
    def start_nunit(self, name: str, attrs: dict[str, str]) -> None:
        if name == "test-case":
            self.case = attrs
            self.case_time += _float(attrs.get("time") or attrs.get("duration"))
            result = (attrs.get("result") or "").lower()
            label = (attrs.get("label") or "").lower()
            executed = (attrs.get("executed") or "true").lower()
            if result in ("failed", "failure"):
                self.outcome = ERRORED if label in ("error", "invalid") else FAILED
            elif result in ("error", "notrunnable", "cancelled"):
                self.outcome = ERRORED
            elif result in ("success", "passed") and executed != "false" or result in ("warning",):
                self.outcome = PASSED
            elif result == "" and executed == "true" and attrs.get("success") is not None:
                self.outcome = PASSED if attrs["success"].lower() == "true" else FAILED
            else:  # ignored, skipped, inconclusive, not executed
                self.outcome = SKIPPED
        elif name == "message" and self.case is not None and self.outcome in (FAILED, ERRORED):
            self._capture_text(not self.text)

    def end_nunit(self, name: str) -> None:
        if name == "test-case" and self.case is not None:
            full = self.case.get("fullname") or self.case.get("name") or ""
            classname = self.case.get("classname") or full.rpartition(".")[0]
            self._finish_case(classname, full, None, None)
        elif name == "message" and self.want_text:
            self._capture_text(False)

    # --- xUnit.net v1 / v2 ----------------------------------------------------------------
    def start_xunit(self, name: str, attrs: dict[str, str]) -> None:
        if name == "test":
            self.case = attrs
            self.case_time += _float(attrs.get("time"))
            result = (attrs.get("result") or "").lower()
            self.outcome = {"pass": PASSED, "fail": FAILED, "skip": SKIPPED, "notrun": SKIPPED}.get(result, ERRORED)
        elif name == "error" and self.case is None:
            # xUnit.net v2 lists what failed outside any test (a fixture's cleanup, a collection's set-up)
            # under <errors>; the assembly counts it in its "errors" attribute, and no <test> says so
            self.case = attrs
            self.outcome = ERRORED
        elif name == "message" and self.case is not None and self.outcome in (FAILED, ERRORED):
            self._capture_text(not self.text)
        elif name == "assembly" and attrs.get("time"):
            self.top_suite_time += _float(attrs.get("time"))
            self.top_suites_timed += 1

    def end_xunit(self, name: str) -> None:
        if name == "test" and self.case is not None:
            self._finish_case(self.case.get("type") or "", self.case.get("name") or "", None, None)
        elif name == "error" and self.case is not None:
            kind = self.case.get("type") or "error"
            self._finish_case(kind, self.case.get("name") or f"({kind} outside any test)", None, None)
        elif name == "message" and self.want_text:
            self._capture_text(False)

    # --- Visual Studio TRX ----------------------------------------------------------------
    def start_trx(self, name: str, attrs: dict[str, str]) -> None:
        if name == "UnitTestResult":
            if self.case is not None:
                # data-driven rows nest results inside a parent result; count the rows, not the parent
                self.depth += 1
            self.case = attrs
            self.case_time += _trx_duration(attrs.get("duration"))
            outcome = (attrs.get("outcome") or "").lower()
            if outcome in ("passed", "passedbutrunaborted", "warning", "completed"):
                self.outcome = PASSED
            elif outcome == "failed":
                self.outcome = FAILED
            elif outcome in ("error", "timeout", "aborted"):
                self.outcome = ERRORED
            else:  # notexecuted, inconclusive, notrunnable, disconnected, pending, inprogress
                self.outcome = SKIPPED
        elif name == "InnerResults" and self.case is not None:
            self.case = None  # the parent result is only a container
        elif name == "ResultSummary":
            outcome = attrs.get("outcome") or ""
            if outcome.lower() in ("failed", "error", "aborted", "timeout"):
                self.run_failed = f"the test run's outcome is {outcome}"
        elif name == "Counters" and self.run_failed is None:
            bad = sum(max(_int(attrs.get(key)) or 0, 0) for key in ("failed", "error", "timeout", "aborted"))
            if bad:
                self.run_failed = f"the test run counts {bad} failed, errored, timed-out or aborted test(s)"
        elif name == "Message" and self.case is not None and self.outcome in (FAILED, ERRORED):
            self._capture_text(not self.text)

    def end_trx(self, name: str) -> None:
        if name == "UnitTestResult" and self.case is not None:
            test_name = self.case.get("testName") or ""
            self._finish_case("", test_name, None, None)
        elif name == "Message" and self.want_text:
            self._capture_text(False)


def parse_test_report(stream: BinaryIO | CappedReader, what: str, limits: ArtifactLimits | None = None,
                      deadline: Deadline | None = None) -> TestTally:
    """Parse one JUnit/xUnit/NUnit/TRX report into a TestTally; raise ArtifactRejected if unusable."""
    lim = limits or ArtifactLimits()
    tally = TestTally(limits=lim)
    handler = _Handler(tally, what)
    parser = new_parser(what)
    handler.parser = parser
    parser.StartElementHandler = handler.start_root
    feed(parser, stream, what, deadline or Deadline(lim.max_seconds_per_file, what),
         between_chunks=tally.passed_ids.fold_if_batch_full)
    if handler.dialect is None:
        raise ArtifactRejected(f"{what} has no root element; it is empty or not XML")
    if tally.cases == 0 and handler.declared[0] > 0:
        # some producers write only suite totals (no <testcase> elements): trust the declared counts
        tests, failures, errors, skipped = handler.declared
        tally.failed, tally.errored, tally.skipped = failures, errors, skipped
        tally.passed = max(tests - failures - errors - skipped, 0)
        tally.cases = tests
    elif handler.run_failed is not None and not tally.failed and not tally.errored:
        tally.add("", f"(test run: {handler.run_failed}, and no listed test failed)", ERRORED, None, None,
                  f"{what}: {handler.run_failed}, e.g. a crashed test host or a fixture's tear-down that failed")
    else:
        # a failure the suite counts but lists under no test case still failed: one errored entry per suite
        for suite, declared in handler.unlisted:
            tally.add(suite, f"({suite or 'suite'}: failures counted by the suite, listed under no test case)",
                      ERRORED, None, None, f"{what}: the suite declares {declared} failure(s) and error(s) but none "
                      "of its test cases failed, e.g. a set-up or tear-down that failed around them")
    if handler.root_time is not None:
        duration = handler.root_time
    elif handler.top_suites_timed:
        duration = handler.top_suite_time
    else:
        duration = handler.case_time
    # some producers write nanoseconds; a report claiming more than MAX_REPORT_SECONDS is not seconds
    tally.duration_s = duration if duration <= MAX_REPORT_SECONDS else 0.0
    tally.files = 1
    tally.formats.add(handler.dialect if handler.dialect != "junit" else "junit")
    return tally
