"""Database URL resolution, engines and sessions.

``RAFSS_DATABASE_URL`` wins when set; otherwise an embedded server is started (or reused) under
``<data_dir>/pg``. Nothing here connects at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.config import Settings, get_settings
from rafss_core.store.embedded import embedded_url, to_sqlalchemy_url

PGDATA_SUBDIR = "pg"


def resolve_settings(settings_or_data_dir: Settings | Path | str | None = None) -> Settings:
    if settings_or_data_dir is None:
        return get_settings()
    if isinstance(settings_or_data_dir, Settings):
        return settings_or_data_dir
    return Settings.load(data_dir=Path(settings_or_data_dir))


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded server keeps its cluster."""
    return Path(data_dir).expanduser() / PGDATA_SUBDIR


def database_url(settings_or_data_dir: Settings | Path | str | None = None) -> str:
    """The SQLAlchemy URL to use.

    ``RAFSS_DATABASE_URL`` (``Settings.database_url``) when set; otherwise the embedded server
    under ``<data_dir>/pg`` is started or reused and its Unix-socket URL returned.
    """
    settings = resolve_settings(settings_or_data_dir)
    if settings.database_url:
        return to_sqlalchemy_url(settings.database_url)
    return embedded_url(pgdata_dir(settings.data_dir))


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` (psycopg 3 driver); connects lazily, pings pooled connections."""
    options: dict[str, object] = {"pool_pre_ping": True, "future": True}
    options.update(kwargs)
    return sa.create_engine(to_sqlalchemy_url(url), **options)


SCP_APPLICATION_NAME = "rafss-scp"  # how the SCP's connections show in pg_stat_activity


def scp_engine(engine: Engine, *, pool_size: int) -> Engine:
    """The Storage SCP's own engine on ``engine``'s database, for one statement per instance.

    - autocommit: the statement is its own transaction, no ``BEGIN``/``COMMIT`` round trips;
    - ``synchronous_commit = off``: the commit does not wait for the WAL flush; a crash can
      lose the last fraction of a second of rows, never their files, which are fsynced in the
      spool before the row is written and recorded again by ``reconcile_spool`` (see
      :mod:`services.scp`);
    - no ``pool_pre_ping`` (it was a round trip per C-STORE): the SCP retries once on a fresh
      connection when a pooled one turns out dead;
    - ``pool_size``: one connection per concurrent association, opened lazily, never more.
    """
    scp = make_engine(
        engine.url.render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=0,
    )
    sa.event.listen(scp, "connect", _scp_session_settings)
    return scp


def _scp_session_settings(dbapi_connection: Any, _record: object) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    dbapi_connection.execute("SET synchronous_commit TO off")
    dbapi_connection.execute(f"SET application_name TO '{SCP_APPLICATION_NAME}'")
    dbapi_connection.autocommit = autocommit


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """``with factory.begin() as session: ...`` commits on success, rolls back on error."""
    return sessionmaker(engine, expire_on_commit=False)


def redact_url(url: str) -> str:
    """The URL with its password hidden, safe to print."""
    return make_url(url).render_as_string(hide_password=True)
