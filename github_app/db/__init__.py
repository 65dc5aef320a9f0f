"""Database access: engine creation, migrations and readiness, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

from github_app.db.sqlite_writes import QueuedWriteConnection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Execution option marking a connection whose transaction only reads (see ``read_only``).
READ_ONLY = "gonogo_read_only"


class DatabaseError(Exception):
    """The database cannot be used; the message says what to check."""


def insert_for(bind: Engine | Connection) -> Any:
    """The dialect's own ``insert`` construct for ``bind``: the one with ON CONFLICT clauses
    (``on_conflict_do_nothing`` / ``on_conflict_do_update``) on SQLite and PostgreSQL alike."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the pragmas and pool settings gonogo relies on.

    On PostgreSQL, ``ping_after_idle`` (seconds) is how long a pooled connection may sit unused before it
    is pinged at checkout.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql" or parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            # a folder that cannot be made fails the first connection, which says so (see ``unreachable``)
            with suppress(OSError):
                Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        options: dict[str, Any] = {"connect_args": connect_args}
        if not database or database == ":memory:":
            options["poolclass"] = StaticPool
        else:
            connect_args["factory"] = QueuedWriteConnection  # this process's writers queue fairly
        options.update(kwargs)
        engine = create_engine(parsed, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    ping_after_idle = float(kwargs.pop("ping_after_idle", PING_AFTER_IDLE_SECONDS))
    options = {"pool_size": 10, "max_overflow": 20}
    options.update(kwargs)
    engine = create_engine(parsed, **options)
    if not options.get("pool_pre_ping"):
        event.listen(engine.pool, "checkin", _note_checkin)
        event.listen(engine.pool, "checkout", functools.partial(_ping_if_idle, ping_after_idle))
    return engine


# A pooled PostgreSQL connection is pinged before use only when it sat idle this long: one that was checked in
# moments ago is almost surely alive, and pinging it on every checkout (pool_pre_ping) cost a round trip per
# transaction. A connection that broke while busy still fails its statement and is discarded by the pool.
PING_AFTER_IDLE_SECONDS = 10.0
_IDLE_SINCE = "gonogo_idle_since"


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    if record is not None:
        record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(after: float, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since < after:
        return  # new (just connected) or recently used
    try:
        before = dbapi_conn.autocommit
        # the ping opens no transaction (psycopg sets this locally, no round trip)
        dbapi_conn.autocommit = True
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
        finally:
            dbapi_conn.autocommit = before
    except Exception as exc:
        # the server closed it (restart, idle timeout): the pool retries with a fresh connection
        raise DisconnectionError(f"idle pooled connection is gone: {exc}") from exc


def _sqlite_begin(conn: Connection) -> None:
    # pysqlite's own transaction handling defers BEGIN; a transaction that may write takes the write lock up
    # front instead, because upgrading a deferred read to a write fails with SQLITE_BUSY when another
    # connection wrote meanwhile. A read-only one begins deferred: under WAL it reads a snapshot without
    # waiting for writers (and their fsyncs), and never needs the lock.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
        return
    driver = conn.connection.driver_connection
    if isinstance(driver, QueuedWriteConnection):
        # queue on this process's lock for the file, then BEGIN IMMEDIATE through SQLAlchemy (its events see it)
        driver.begin_write(conn.exec_driver_sql)
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for work that only reads; its transaction ends (rolled back) when the block exits.

    On SQLite the transaction begins deferred instead of taking the write lock, so readers do not queue
    behind writers; writing through this connection is a bug (it may fail with "database is locked").
    On PostgreSQL it is an ordinary connection.
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})  # before the first statement begins the transaction
        yield conn


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN (IMMEDIATE)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)
    log.info("db.upgraded", extra={"revision": revision, "dialect": engine.dialect.name})


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to ``revision`` ("base" removes every table)."""
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    """True when the database answers and its schema is at the newest migration."""
    return current_revision(engine) == head_revision(engine)


def describe(url: str) -> str:
    """Render a database URL for logs and messages, without its password."""
    return make_url(url).render_as_string(hide_password=True)


def unreachable(url: str, exc: Exception) -> str:
    """Say that the database at ``url`` could not be used, why (the driver's first line), and what to check."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if make_url(url).get_backend_name() == "sqlite":
        check = "that this user may create and write that file and its folder"
    else:
        check = "that the database server runs and that this host may connect to it"
    return f"Cannot reach the database {describe(url)} ({reason}): check GONOGO_DATABASE_URL and {check}."
