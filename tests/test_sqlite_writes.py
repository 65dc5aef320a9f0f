"""The per-file queue for this process's SQLite writers: every path out of a transaction frees it."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from sqlalchemy import text

from github_app import db
from github_app.db.sqlite_writes import QueuedWriteConnection, _lock_for


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine, str(tmp_path / "q.db")
    engine.dispose()


def test_file_databases_use_the_queue_and_memory_ones_do_not(sqlite_engine):
    engine, _ = sqlite_engine
    with engine.connect() as conn:
        assert isinstance(conn.connection.driver_connection, QueuedWriteConnection)
    memory = db.make_engine("sqlite://")
    try:
        with memory.begin() as conn:  # still works, without a queue
            conn.execute(text("CREATE TABLE m (n INTEGER)"))
            assert not isinstance(conn.connection.driver_connection, QueuedWriteConnection)
    finally:
        memory.dispose()


def test_commit_rollback_and_failure_all_free_the_queue(sqlite_engine):
    engine, path = sqlite_engine
    lock = _lock_for(path)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert lock.locked()  # held for the whole write transaction
    assert not lock.locked()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("the handler failed")
    assert not lock.locked()
    with pytest.raises(Exception, match="no_such_table"), engine.begin() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (3)"))
    assert not lock.locked()
    with db.read_only(engine) as conn:  # readers never queue
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
        assert not lock.locked()


def test_many_threads_and_engines_write_without_database_is_locked(sqlite_engine, tmp_path):
    engine, path = sqlite_engine
    other = db.make_engine(f"sqlite:///{path}")  # a second engine on the same file shares the queue
    start = threading.Barrier(16)

    def write(k: int) -> None:
        eng = engine if k % 2 else other
        start.wait()
        for i in range(25):
            with eng.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": k * 100 + i})

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(write, range(16)))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 16 * 25
    finally:
        other.dispose()
    assert not _lock_for(path).locked()
