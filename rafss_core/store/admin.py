"""Database administration: the Python twins of ``rafss db upgrade`` and ``rafss db status``.

Alembic is configured programmatically (no ``alembic.ini`` needed, works from any directory):
the scripts live in ``<repo>/migrations``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from rafss_core.config import Settings
from rafss_core.store.engine import database_url, make_engine, redact_url
from rafss_core.store.vector import INDEX_PREFIX

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic autogenerate filter: the per-dimension HNSW indexes are created at run time
    (:func:`rafss_core.store.vector.ensure_vector_index`), not by migrations."""
    return not (type_ == "index" and name is not None and name.startswith(INDEX_PREFIX))


def alembic_config() -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic scripts not found in {MIGRATIONS_DIR}: install RAFSS from a source checkout "
            "(pip install -e .) so that migrations/ sits beside rafss_core/"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migration_head() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions in {MIGRATIONS_DIR / 'versions'}")
    return head


def _url(data_dir: Path | None, url: str | None) -> str:
    if url:
        return url
    return database_url(Settings.load(data_dir=data_dir) if data_dir is not None else None)


def _run(url: str, fn: Any, revision: str) -> None:
    cfg = alembic_config()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, revision)
    finally:
        engine.dispose()


def upgrade(data_dir: Path | None = None, url: str | None = None, revision: str = "head") -> str:
    """Run the migrations up to ``revision``; return the database's revision afterwards."""
    target = _url(data_dir, url)
    _run(target, command.upgrade, revision)
    return current_revision(target) or "base"


def downgrade(data_dir: Path | None = None, url: str | None = None, revision: str = "base") -> str:
    """Run the migrations down to ``revision`` (default: drop everything, extension included)."""
    target = _url(data_dir, url)
    _run(target, command.downgrade, revision)
    return current_revision(target) or "base"


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def status(data_dir: Path | None = None, url: str | None = None) -> dict[str, Any]:
    """Server version, pgvector version, the code's migration head and the database revision.

    ``pgvector_version`` is the installed extension's version, or ``None`` before the first
    ``upgrade``; ``current_revision`` is ``None`` for an empty database.
    """
    target = _url(data_dir, url)
    engine = make_engine(target)
    try:
        with engine.connect() as conn:
            server_version = conn.execute(sa.text("SHOW server_version")).scalar_one()
            pgvector = conn.execute(
                sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one_or_none()
            available = conn.execute(
                sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar_one_or_none()
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    head = migration_head()
    return {
        "server_version": str(server_version),
        "pgvector_version": pgvector,
        "pgvector_available": available,
        "migration_head": head,
        "current_revision": current,
        "up_to_date": current == head,
        "url": redact_url(target),
    }


def ping(sessions: Any) -> None:
    """``SELECT 1`` on the database; raises when it is unreachable (``/health``)."""
    with sessions() as s:
        s.execute(sa.text("SELECT 1"))
