"""Caps that keep hostile artifacts from exhausting the machine, and the error that reports them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Self

MIB = 1024 * 1024


class ArtifactRejected(Exception):
    """An artifact (archive, member or report) was refused; ``str(exc)`` is a one-line human reason."""


@dataclass(frozen=True)
class ArtifactLimits:
    """Upper bounds applied while unpacking and parsing untrusted artifacts."""

    max_archive_bytes: int = 200 * MIB  # a zip larger than this is refused before it is opened
    max_member_bytes: int = 250 * MIB  # decompressed bytes of one file
    max_total_bytes: int = 1024 * MIB  # decompressed bytes of all files of one archive or folder
    max_members: int = 10_000  # files in one archive or folder
    max_seconds_per_file: float = 30.0  # wall time spent parsing one report
    max_line_bytes: int = 1 * MIB  # one line of a CSV or lcov file
    max_findings: int = 1000  # failing tests / security findings kept with details (counts are not capped)
    max_tracked_tests: int = 200_000  # distinct test ids remembered for rerun (flaky) detection
    max_tracked_findings: int = 500_000  # distinct finding keys remembered for deduplication
    max_samples: int = 5_000_000  # raw load-test samples kept in memory per report (4 bytes each)
    max_transactions: int = 1000  # distinct load-test transactions per report
    baseline_points: int = 1000  # order statistics kept per transaction in the stored baseline
    max_zip_depth: int = 1  # zips inside a folder are opened; zips inside zips are not
    sniff_bytes: int = 64 * 1024  # head of each file read for content sniffing
    max_listed_files: int = 200  # files listed by name as not understood (all are counted)
    max_json_report_bytes: int = 64 * MIB  # JSON test reports decoded as a whole (mocha, jest, rspec, pytest-json-report)


class Deadline:
    """Wall-clock budget for parsing one file; ``check()`` raises once it is spent."""

    def __init__(self, seconds: float, what: str) -> None:
        self._end = time.monotonic() + seconds
        self._seconds = seconds
        self._what = what

    def check(self) -> None:
        """Raise ArtifactRejected if the budget is spent."""
        if time.monotonic() > self._end:
            raise ArtifactRejected(
                f"{self._what} took longer than {self._seconds:g} s to parse; "
                "split the report or raise ArtifactLimits.max_seconds_per_file"
            )


class ByteBudget:
    """A shared count of decompressed bytes across the members of one archive or folder."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        """Count ``n`` more bytes; raise ArtifactRejected past the limit."""
        self.used += n
        if self.used > self.limit:
            raise ArtifactRejected(
                f"artifact expands to more than {self.limit // MIB} MiB in total "
                "(possible zip bomb); raise ArtifactLimits.max_total_bytes if it is genuine"
            )


class CappedReader:
    """A read-only binary stream that counts the bytes it really produces and stops past a cap.

    Zip headers can lie about sizes, so the cap is enforced on bytes actually read.
    """

    def __init__(self, raw: BinaryIO | IO[bytes], cap: int, what: str, budget: ByteBudget | None = None) -> None:
        self._raw = raw
        self._cap = cap
        self._what = what
        self._budget = budget
        self.count = 0

    def _account(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self._cap:
            raise ArtifactRejected(
                f"{self._what} is larger than {self._cap // MIB} MiB once decompressed; "
                "raise ArtifactLimits.max_member_bytes if it is genuine"
            )
        if self._budget is not None:
            self._budget.spend(len(data))
        return data

    def read(self, size: int = -1) -> bytes:
        """Read at most ``size`` bytes (a bounded default when ``size`` is negative)."""
        if size is None or size < 0:
            # never slurp an unbounded stream: read up to the cap, plus one byte to detect overflow
            size = self._cap - self.count + 1
        return self._account(self._raw.read(size))

    def readline(self, size: int = -1) -> bytes:
        """Read one line of at most ``size`` bytes."""
        if size is None or size < 0:
            size = self._cap - self.count + 1
        return self._account(self._raw.readline(size))

    def close(self) -> None:
        """Close the underlying stream."""
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lines(
    stream: BinaryIO | CappedReader, limits: ArtifactLimits, what: str, deadline: Deadline
) -> Iterator[str]:
    """Yield decoded text lines, refusing any line longer than ``limits.max_line_bytes``."""
    cap = limits.max_line_bytes
    number = 0
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        number += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            raise ArtifactRejected(
                f"{what} line {number} is longer than {cap // 1024} KiB; not a plausible report"
            )
        if number % 4096 == 0:
            deadline.check()
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        yield raw.decode("utf-8", errors="replace")
