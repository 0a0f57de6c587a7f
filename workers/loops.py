"""The worker-side periodic loop: assemble series, route them, dispatch jobs, deliver results.

It runs inside ``rafss worker`` and ``rafss up``. Every step is a short transaction with
``SKIP LOCKED`` or an idempotency key, so several loops may run at once, and a crash between
steps loses nothing: the next tick picks up from the rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.config import Settings
from workers.assembler import close_quiet_series
from workers.dispatch import Enqueue, dispatch_once
from workers.routing import route_closed_series

log = logging.getLogger(__name__)

Step = Callable[[], object]


class ServiceLoop:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], enqueue: Enqueue,
                 extra_steps: list[Step] | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.enqueue = enqueue
        self.extra_steps = extra_steps or []
        self._next_retention = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        with self.sessions.begin() as s:
            close_quiet_series(s, self.settings.series_quiet_seconds)
        with self.sessions.begin() as s:
            route_closed_series(s, self.settings.models_dir,
                                max_attempts=self.settings.job_max_attempts)
        dispatch_once(self.sessions, self.enqueue, self.settings.job_stale_seconds)
        for step in self.extra_steps:
            step()
        if time.monotonic() >= self._next_retention:  # every RAFSS_RETENTION_INTERVAL_SECONDS
            self._next_retention = time.monotonic() + self.settings.retention_interval_seconds
            from rafss_core.app import App
            from rafss_core.app.retention import run_retention

            run_retention(App(self.sessions, self.settings), "retention")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the database may be restarting: keep going
                log.warning("service loop tick failed (%s: %s); retrying", type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
            self._stop.wait(self.settings.loop_interval_seconds)

    def start(self) -> ServiceLoop:
        self._thread = threading.Thread(target=self._run, name="rafss-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
