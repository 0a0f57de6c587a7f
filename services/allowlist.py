"""Who may store to the SCP: the ``allowed_sources`` table, cached for a short TTL."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.repositories.sources import AllowedSourceEntry, list_allowed_sources

LOG = logging.getLogger("rafss.scp.allowlist")


def entry_admits(entry: AllowedSourceEntry, ae_title: str, ip: str | None) -> bool:
    """Does this entry admit ``ae_title`` calling from ``ip``?"""
    if entry.ae_title != ae_title.strip():
        return False
    if entry.ip is None:
        return True
    if ip is None:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(entry.ip, strict=False)
    except ValueError:
        return False


class CallerAllowList:
    """AE-title (+ optional IP) allow-list backed by the database, cached for ``ttl_seconds``.

    If the database cannot be read, the last list read is kept (an outage must not lock out
    known modalities); with no list read yet every caller is refused (fail closed).
    ``allow_any`` admits everybody: for tests and closed lab networks only.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session] | None,
        *,
        ttl_seconds: float = 30.0,
        allow_any: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if session_factory is None and not allow_any:
            raise ValueError("an allow-list needs a session factory unless allow_any is set")
        self._factory = session_factory
        self._ttl = ttl_seconds
        self._allow_any = allow_any
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[AllowedSourceEntry] | None = None
        self._loaded_at = float("-inf")

    def is_allowed(self, ae_title: str, ip: str | None) -> bool:
        if self._allow_any:
            return True
        entries = self._current()
        return any(entry_admits(e, ae_title, ip) for e in entries)

    def invalidate(self) -> None:
        """Forget the cached list; the next check reads the table."""
        with self._lock:
            self._loaded_at = float("-inf")

    def _current(self) -> list[AllowedSourceEntry]:
        with self._lock:
            if self._clock() - self._loaded_at < self._ttl and self._entries is not None:
                return self._entries
            assert self._factory is not None
            try:
                with self._factory() as session:
                    self._entries = list_allowed_sources(session)
                self._loaded_at = self._clock()
            except Exception as exc:  # the database is down: keep the last list read
                LOG.warning(
                    "cannot read the AE allow-list (%s); %s",
                    type(exc).__name__,
                    "using the last list read" if self._entries is not None else "refusing all",
                )
            return self._entries or []
