"""Fixtures: a fresh database per test (SQLite file, or a PostgreSQL schema), running apps over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from github_app import db
from tests.helpers import CORPUS, POSTGRES_URL, backend


def _fresh_postgres_schema(base_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database URL on the backend under test (GONOGO_DATABASE_URL), with a fresh empty schema."""
    if backend() == "postgresql":
        yield from _fresh_postgres_schema(os.environ["GONOGO_DATABASE_URL"])
    else:
        yield f"sqlite:///{tmp_path / 'gonogo.db'}"


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """Like ``empty_database_url``, with every migration applied."""
    _migrate(empty_database_url)
    return empty_database_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh migrated schema on the local PostgreSQL, whatever backend the run is for."""
    for url in _fresh_postgres_schema(POSTGRES_URL):
        _migrate(url)
        yield url


@pytest.fixture(scope="session")
def corpus() -> Path:
    assert CORPUS.is_dir(), f"the vendored fixtures are missing at {CORPUS}"
    return CORPUS
