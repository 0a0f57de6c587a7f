from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import migrated_database


@pytest.fixture(scope="module")
def worker_db_url(pg_server_url: str) -> Iterator[str]:
    """A migrated database of this module's own: the assembler and dispatcher act on all rows."""
    with migrated_database(pg_server_url, "rafss_workers") as url:
        yield url


@pytest.fixture(scope="module")
def worker_sessions(worker_db_url: str):
    from rafss_core.store.engine import make_engine, session_factory

    engine = make_engine(worker_db_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()
