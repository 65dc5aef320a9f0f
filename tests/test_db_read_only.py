"""Read-only connections: deferred transactions on SQLite, so readers never queue behind a writer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text

from github_app import db
from github_app.db.models import Waiver as WaiverRow
from tests.helpers import backend


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.strip().upper())

    event.listen(engine, "before_cursor_execute", record)
    return seen


def test_sqlite_reads_begin_deferred_and_everything_else_immediate(engine: Engine) -> None:
    seen = _statements(engine)
    with db.read_only(engine) as conn:
        conn.execute(select(WaiverRow.id)).all()
    with engine.connect() as conn:
        conn.execute(select(WaiverRow.id)).all()
    with engine.begin() as conn:
        conn.execute(select(WaiverRow.id)).all()
    begins = [s for s in seen if s.startswith("BEGIN")]
    if backend() == "sqlite":
        assert begins == ["BEGIN", "BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]
    else:  # PostgreSQL's driver begins its transactions itself: no SQLite statement reaches it
        assert begins == []


def test_a_reader_sees_committed_rows_while_a_writer_holds_its_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO waivers (repository, environment, rule_id, reason, author, created_at, "
                          "expires_at) VALUES ('a/b', 'production', 'GNG-SEC-001', 'r', 'mona', "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))  # fmt: skip
    writer = engine.connect()
    try:
        # the writer's transaction is open (on SQLite it holds the write lock) and not committed
        writer.execute(text("UPDATE waivers SET reason = 'changed'"))
        with db.read_only(engine) as conn:
            assert conn.execute(select(WaiverRow.reason)).scalars().all() == ["r"]
        writer.commit()
    finally:
        writer.close()
    with db.read_only(engine) as conn:
        assert conn.execute(select(WaiverRow.reason)).scalars().all() == ["changed"]
        assert conn.in_transaction()
    assert not conn.in_transaction()  # closed with its block
