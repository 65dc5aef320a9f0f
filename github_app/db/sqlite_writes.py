"""One queue per SQLite file for this process's write transactions.

SQLite lets one connection write at a time. A connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps and retries (1, 2, 5 ... 100 ms): it is not woken when the lock
is freed, and a steady stream of other writers can keep beating it to the lock. Under load that
turned into intake answers of several hundred milliseconds while workers finished jobs.

Writers of the same process therefore queue on a Python lock per database file first, which hands
over the moment the holder commits or rolls back. Other processes still meet at SQLite's own lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

LOCK_WAIT_SECONDS = 30.0  # then fall through to SQLite's own busy wait, as before this queue existed

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(database: str) -> threading.Lock | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    key = os.path.realpath(database)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


class QueuedWriteConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions queue on the per-file lock of this process."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._write_lock = _lock_for(os.fspath(database) if not isinstance(database, str) else database)
        self._holding = False

    def queue_for_write(self) -> None:
        """Wait for this file's turn to write (then issue BEGIN IMMEDIATE, taking SQLite's lock)."""
        if self._write_lock is not None and not self._holding:
            self._holding = self._write_lock.acquire(timeout=LOCK_WAIT_SECONDS)

    def leave_queue(self) -> None:
        """Give the turn to the next writer (done by commit, rollback and close)."""
        if self._holding:
            self._holding = False
            self._write_lock.release()  # type: ignore[union-attr]

    def begin_write(self, execute: Callable[[str], Any] | None = None) -> None:
        """Queue, then BEGIN IMMEDIATE (with ``execute``, e.g. a SQLAlchemy connection's, else directly)."""
        self.queue_for_write()
        try:
            (execute or self.execute)("BEGIN IMMEDIATE")
        except BaseException:
            self.leave_queue()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_queue()
