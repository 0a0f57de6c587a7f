"""The outbox dispatcher: job rows -> Celery messages, and recovery of stalled jobs.

Jobs are rows first. Each tick:

1. a ``running`` job whose heartbeat is older than ``stale_seconds`` (its worker died) goes back
   to ``queued``, or to ``dead`` when its attempts are used up;
2. a ``failed`` job goes back to ``queued`` after an exponential backoff, or to ``dead``;
3. every ``queued`` job not enqueued yet, or enqueued more than ``stale_seconds`` ago without
   being picked up (the message was lost, e.g. a broker restart), is published.

Publishing happens inside the row's transaction: if the broker is down the publish raises, the
transaction rolls back and the job stays ``queued`` for the next tick. A broker outage delays
work; it never loses a job. A duplicate message is harmless: workers claim jobs atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobState
from rafss_core.store.repositories.jobs import (
    due_job_ids,
    lock_queued_job,
    mark_enqueued,
    recover_stale_jobs,
)

log = logging.getLogger(__name__)


@dataclass
class DispatchStats:
    recovered: int = 0
    dead: int = 0
    enqueued: int = 0
    broker_errors: int = 0


Enqueue = Callable[[int], None]


def recover_jobs(session: Session, stale_seconds: float, backoff_seconds: float) -> DispatchStats:
    stats = DispatchStats()
    for job_id, state in recover_stale_jobs(session, stale_seconds, backoff_seconds):
        if state == JobState.DEAD:
            stats.dead += 1
            log.error("job %s is dead: attempts used up (see `rafss jobs list --state dead`)",
                      job_id)
        else:
            stats.recovered += 1
            log.warning("job %s re-queued", job_id)
    return stats


def dispatch_once(sessions: sessionmaker[Session], enqueue: Enqueue, stale_seconds: float = 60.0,
                  backoff_seconds: float = 5.0, limit: int = 100) -> DispatchStats:
    """One dispatcher tick (see the module docstring)."""
    with sessions.begin() as session:
        stats = recover_jobs(session, stale_seconds, backoff_seconds)
    with sessions() as session:
        ids = due_job_ids(session, stale_seconds, limit)
    for job_id in ids:
        try:
            with sessions.begin() as session:
                if not lock_queued_job(session, job_id):
                    continue
                enqueue(job_id)
                mark_enqueued(session, job_id)
            stats.enqueued += 1
        except Exception as exc:  # broker down: keep the row queued, try next tick
            stats.broker_errors += 1
            log.warning("could not enqueue job %s (%s); it stays queued and is retried",
                        job_id, type(exc).__name__)
            break
    return stats


def celery_enqueue(app: object) -> Enqueue:
    """Publish ``rafss.run_job(job_id)`` on the model queue."""

    def enqueue(job_id: int) -> None:
        app.send_task("rafss.run_job", args=[job_id], retry=False)  # type: ignore[attr-defined]

    return enqueue
