"""Rerun (flaky) bookkeeping of the JUnit parser: batched counting gives what one-by-one counting gives,
including past the cap on remembered test ids and across the parser's fold batches."""

from __future__ import annotations

import io
import random

import pytest

from scorer.parsers import ArtifactFile, ArtifactLimits, parse_artifacts
from scorer.parsers.junit import FOLD_BATCH, SMALL_IDS, PassCounts, TestTally, parse_test_report


class _OneByOne:
    """Reference: count passing attempts in a dict, one attempt at a time, keeping the first ``cap`` ids."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[int, int] = {}

    def add(self, key: int, n: int = 1) -> None:
        if key in self.counts:
            self.counts[key] += n
        elif len(self.counts) < self.cap:
            self.counts[key] = n

    def merge(self, other: _OneByOne) -> None:
        for key, n in other.counts.items():  # in the order the other first saw them
            self.add(key, n)


def _feed(rng: random.Random, counts: PassCounts, reference: _OneByOne, universe: list[int], attempts: int) -> None:
    for _ in range(attempts):
        key = rng.choice(universe)
        counts.pending.append(key)
        reference.add(key)
        if rng.random() < 0.05:  # fold at arbitrary points, as chunk boundaries fall anywhere
            counts.fold_pending()


@pytest.mark.parametrize("small_ids", [SMALL_IDS, 16])  # the dict alone, and the move to numpy arrays midway
@pytest.mark.parametrize("cap", [0, 1, 7, 50, 10_000])
@pytest.mark.parametrize("seed", range(5))
def test_batched_counts_equal_one_by_one_counts(cap: int, seed: int, small_ids: int) -> None:
    rng = random.Random(seed)
    universe = [rng.randrange(-(2**63), 2**63) for _ in range(120)]
    mine, theirs = PassCounts(cap, small_ids), PassCounts(cap, small_ids)
    mine_ref, theirs_ref = _OneByOne(cap), _OneByOne(cap)
    _feed(rng, mine, mine_ref, universe[:30], 200)
    _feed(rng, theirs, theirs_ref, universe[20:], 600)
    assert len(mine) == len(mine_ref.counts) <= cap
    assert mine.counts_of(universe) == [mine_ref.counts.get(k, 0) for k in universe]
    # merging with room for only some of the other's ids keeps those it saw first
    mine.merge(theirs)
    mine_ref.merge(theirs_ref)
    assert len(mine) == len(mine_ref.counts)
    assert mine.counts_of(universe) == [mine_ref.counts.get(k, 0) for k in universe]
    # and the merged counts remember that order for the next merge
    half, half_ref = PassCounts(cap // 2, small_ids), _OneByOne(cap // 2)
    half.merge(mine)
    half_ref.merge(mine_ref)
    assert half.counts_of(universe) == [half_ref.counts.get(k, 0) for k in universe]


def _report(names: list[str], failing: set[str]) -> bytes:
    rows = [b'<?xml version="1.0"?>\n<testsuites><testsuite name="s">\n']
    for name in names:
        attrs = f'classname="pkg.mod.TestThing" name="{name}" file="tests/test_thing.py" line="7" time="0.001"'
        if name in failing:
            rows.append(f'<testcase {attrs}><failure message="boom {name}">trace</failure></testcase>\n'.encode())
        else:
            rows.append(f"<testcase {attrs}/>\n".encode())
    rows.append(b"</testsuite></testsuites>\n")
    return b"".join(rows)


def test_flaky_found_across_fold_batches_and_files() -> None:
    # enough passing tests to fill several fold batches and several 1 MiB chunks
    names = [f"test_{i}" for i in range(3 * FOLD_BATCH)]
    rerun_failures = {names[0], names[FOLD_BATCH + 3], names[-1]}
    first_run = _report(names, set())
    second_run = _report(sorted(rerun_failures) + ["test_new_and_broken"], rerun_failures | {"test_new_and_broken"})
    assert len(first_run) > 3 * 2**20
    # the failing rerun is read first: flaky is resolved after every file is merged (two attempts of one
    # job: the same report in folders named as attempts)
    part = parse_artifacts([ArtifactFile.from_bytes("attempt-2/TEST-a.xml", second_run),
                            ArtifactFile.from_bytes("attempt-1/TEST-a.xml", first_run)]).tests
    assert (part.total, part.passed, part.failed) == (len(names) + 1, len(names), 1)
    assert sorted(c.name for c in part.flaky) == sorted(rerun_failures)
    assert [c.name for c in part.failures] == ["test_new_and_broken"]


def test_past_the_cap_only_the_first_ids_are_remembered() -> None:
    names = [f"test_{i}" for i in range(2 * FOLD_BATCH)]
    cap = FOLD_BATCH + 10
    # one id passes twice: the second attempt lands after the cap is reached and must still count
    report = _report(names + [names[5]], set())
    limits = ArtifactLimits(max_tracked_tests=cap)
    tally = parse_test_report(io.BytesIO(report), "TEST-a.xml", limits)
    assert len(tally.passed_ids) == cap
    rerun = parse_test_report(io.BytesIO(_report([names[5], names[cap - 1], names[cap]], set(names))),
                              "TEST-b.xml", limits)
    merged = TestTally(limits=limits)
    merged.merge(tally, "one job")
    merged.merge(rerun, "one job")  # a retry of the same job
    part = merged.to_part([])
    # names[cap] was never remembered as passing, so its failure stands; the other two are flaky
    assert sorted(c.name for c in part.flaky) == sorted([names[5], names[cap - 1]])
    assert [c.name for c in part.failures] == [names[cap]]
    # names[5] passed twice and failed once: one passing test; names[cap - 1]: one passing test
    assert (part.total, part.passed, part.failed) == (len(names) + 1, len(names), 1)


def test_nameless_cases_are_never_matched_as_reruns() -> None:
    failing = b'<testsuite><testcase classname="" name=""><failure message="boom"/></testcase></testsuite>'
    passing = b'<testsuite><testcase classname="" name=""/></testsuite>'
    # many files, so a freed per-file tally's memory is reused by the next one
    files = [ArtifactFile.from_bytes("job0/TEST-pass.xml", passing), ArtifactFile.from_bytes("job1/TEST-fail.xml", failing)]
    files += [ArtifactFile.from_bytes(f"job{i}/TEST-pass.xml", passing) for i in range(2, 59)]
    part = parse_artifacts(files).tests
    assert (part.total, part.failed, part.passed) == (59, 1, 58)
    assert part.flaky == [] and len(part.failures) == 1
