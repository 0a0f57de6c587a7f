"""Alembic migrations on a real server: up, down, up again, and no drift from the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rafss_core.store import admin
from rafss_core.store.admin import include_object
from rafss_core.store.engine import make_engine
from rafss_core.store.models import Base


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _extension(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def test_migrations_up_down_up(fresh_database_url: str) -> None:
    url = fresh_database_url
    assert _extension(url) is None

    head = admin.upgrade(url=url)
    assert head == admin.migration_head()
    assert set(Base.metadata.tables) <= _tables(url)
    assert _extension(url) is not None

    assert admin.downgrade(url=url, revision="0001_vector_extension") == "0001_vector_extension"
    assert _tables(url) == {"alembic_version"}
    assert _extension(url) is not None  # first revision: the extension only

    assert admin.downgrade(url=url) == "base"
    assert _tables(url) <= {"alembic_version"}
    assert _extension(url) is None

    assert admin.upgrade(url=url) == head
    assert set(Base.metadata.tables) <= _tables(url)


def test_upgrade_is_idempotent(migrated_database_url: str) -> None:
    head = admin.migration_head()
    assert admin.upgrade(url=migrated_database_url) == head
    assert admin.upgrade(url=migrated_database_url) == head


def test_migrated_schema_matches_the_models(migrated_database_url: str) -> None:
    """Autogenerate finds nothing to do: the hand-kept migration and the models agree."""
    engine = make_engine(migrated_database_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"include_object": include_object, "compare_type": True}
            )
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
