"""Running one job row: claim, heartbeat, finish. Every step is fenced by the attempt number.

A worker claims a job atomically (``queued`` -> ``running``, ``attempts += 1``); a second
message for the same job finds it already running or done and does nothing. While the job runs
a heartbeat thread refreshes ``heartbeat_at``; if the worker dies the heartbeat goes stale and
the dispatcher re-queues the job. Finishing is fenced on the attempt number, so a worker that
lost its claim can never overwrite the newer attempt's outcome.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobKind, JobState
from rafss_core.store.repositories.jobs import claim_job, finish_job, touch_heartbeat

log = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # recorded on the jobs this process claims


@dataclass(frozen=True)
class Claim:
    job_id: int
    attempt: int
    kind: JobKind


def claim(sessions: sessionmaker[Session], job_id: int) -> Claim | None:
    """Claim a queued job in its own transaction; None when it is not queued."""
    with sessions.begin() as s:
        claimed = claim_job(s, job_id, WORKER)
    if claimed is None:
        log.info("job %s is not queued (already running or finished): skipped", job_id)
        return None
    attempt, kind = claimed
    return Claim(job_id, attempt, JobKind(kind))


def _finish(sessions: sessionmaker[Session], c: Claim, state: str, error: str | None) -> bool:
    """Record the claim's outcome; False (and a warning) when the claim was lost."""
    with sessions.begin() as s:
        done = finish_job(s, c.job_id, c.attempt, state, error)
    if not done:
        log.warning("job %s attempt %s lost its claim; outcome discarded", c.job_id, c.attempt)
    return done


class Heartbeat:
    def __init__(self, sessions: sessionmaker[Session], c: Claim, every: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sessions, c, every),
                                        name=f"heartbeat-{c.job_id}", daemon=True)

    def _run(self, sessions: sessionmaker[Session], c: Claim, every: float) -> None:
        while not self._stop.wait(every):
            try:
                with sessions.begin() as s:
                    touch_heartbeat(s, c.job_id, c.attempt)
            except Exception:
                log.warning("heartbeat for job %s failed; retrying", c.job_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


Runner = Callable[[Claim], None]


def run_job(sessions: sessionmaker[Session], job_id: int, runners: dict[JobKind, Runner],
            heartbeat_seconds: float = 5.0) -> str | None:
    """Claim and run a job; return its final state (None when it was not claimable)."""
    c = claim(sessions, job_id)
    if c is None:
        return None
    runner = runners.get(c.kind)
    if runner is None:
        _finish(sessions, c, JobState.DEAD.value, f"no runner for job kind {c.kind}")
        return JobState.DEAD.value
    try:
        with Heartbeat(sessions, c, heartbeat_seconds):
            runner(c)
    except Exception as exc:
        # the message names the error class and text; tracebacks go to the log, never PHI
        log.error("job %s attempt %s failed: %s\n%s", job_id, c.attempt, type(exc).__name__,
                  traceback.format_exc(limit=8))
        _finish(sessions, c, JobState.FAILED.value, f"{type(exc).__name__}: {exc}"[:2000])
        return JobState.FAILED.value
    _finish(sessions, c, JobState.SUCCEEDED.value, None)
    log.info("job %s succeeded (attempt %s)", job_id, c.attempt)
    return JobState.SUCCEEDED.value
