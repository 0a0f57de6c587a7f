"""Celery tasks. Thin: each claims a job row and runs it; the row carries all the state."""

from __future__ import annotations

import functools
import logging
import threading

from workers.celery_app import app

log = logging.getLogger(__name__)
_context = None
_context_lock = threading.Lock()
_settings = None  # set by `rafss worker`; else Settings.load() (environment and config file)


def use_settings(settings) -> None:  # settings: rafss_core.config.Settings
    """The settings this worker process's jobs run on (device, data dir, models)."""
    global _settings
    _settings = settings


def worker_context():  # -> WorkerContext
    """Built once per worker process (models then load once per process too)."""
    global _context
    with _context_lock:
        if _context is None:
            from rafss_core.config import Settings
            from rafss_core.store.engine import database_url, make_engine, session_factory
            from workers.segment_job import WorkerContext

            settings = _settings if _settings is not None else Settings.load()
            engine = make_engine(database_url(settings))
            _context = WorkerContext(settings, engine, session_factory(engine))
        return _context


@app.task(name="rafss.run_job", ignore_result=True)
def run_job(job_id: int) -> str | None:
    from rafss_core.store.enums import JobKind
    from workers.jobs import run_job as run
    from workers.reference_jobs import run_embed_references, run_prepare_references
    from workers.segment_job import run_segment_job

    ctx = worker_context()
    runners = {JobKind.SEGMENT: functools.partial(run_segment_job, ctx),
               JobKind.EMBED_REFERENCES: functools.partial(run_embed_references, ctx),
               JobKind.PREPARE_REFERENCES: functools.partial(run_prepare_references, ctx)}
    return run(ctx.sessions, int(job_id), runners, ctx.settings.job_heartbeat_seconds)
