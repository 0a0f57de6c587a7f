from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import create_database, drop_database


@pytest.fixture(scope="module")
def worker_db_url(pg_server_url: str) -> Iterator[str]:
    """A migrated database of this module's own: the assembler and dispatcher act on all rows."""
    from rafss_core.store.admin import upgrade

    name = f"rafss_workers_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server_url, name)
    upgrade(url=url)
    try:
        yield url
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
def worker_sessions(worker_db_url: str):
    from rafss_core.store.engine import make_engine, session_factory

    engine = make_engine(worker_db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()
