"""Alembic environment for RAFSS.

Normally driven programmatically by :mod:`rafss_core.store.admin` (``rafss db upgrade``), which
hands over an open connection in ``config.attributes["connection"]``. Plain ``alembic`` from the
repository root also works (``alembic.ini``); the URL then comes from ``-x url=...``, else from
RAFSS settings (``RAFSS_DATABASE_URL`` or the embedded server under the data directory).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from rafss_core.store.admin import include_object
from rafss_core.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    if x_url:
        return x_url
    from rafss_core.store.engine import database_url

    return database_url()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from rafss_core.store.engine import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
