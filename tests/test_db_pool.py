"""PostgreSQL pool: connections are pinged at checkout only after sitting idle, and a dead one is replaced."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from github_app import db
from tests.helpers import POSTGRES_URL


def _terminate(pid: int) -> None:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # waits (up to 5 s) until the backend has exited
            assert (
                conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar() is True
            )
    finally:
        admin.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_an_idle_connection_killed_by_the_server_is_replaced_at_checkout(postgres_url: str) -> None:
    engine = db.make_engine(postgres_url, ping_after_idle=0)  # every pooled connection counts as idle
    try:
        first = _backend_pid(engine)
        _terminate(first)
        # the checkout's ping finds it dead; the pool connects afresh and the caller never sees the error
        second = _backend_pid(engine)
        assert second != first
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_recently_used_connection_is_not_pinged_and_a_dead_one_is_dropped_after_its_error(
    postgres_url: str,
) -> None:
    engine = db.make_engine(postgres_url)  # default: ping only after 10 s idle, so no round trip here
    try:
        first = _backend_pid(engine)
        _terminate(first)
        with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert caught.value.connection_invalidated  # the pool throws the broken connection away
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
