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

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import JobState

log = logging.getLogger(__name__)

_RECOVER = sa.text("""
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    last_error = coalesce(last_error || '; ', '') ||
                 CASE WHEN state = 'running' THEN 'worker lost (heartbeat stale)'
                      ELSE 'retrying' END,
    enqueued_at = NULL, updated_at = now()
WHERE (state = 'running' AND heartbeat_at < now() - make_interval(secs => :stale))
   OR (state = 'failed' AND
       updated_at < now() - make_interval(secs => least(:backoff * power(2, attempts - 1), 3600)))
RETURNING id, state
""")

_DUE = sa.text("""
SELECT id FROM jobs
WHERE state = 'queued'
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => :stale))
ORDER BY created_at
LIMIT :limit
""")


@dataclass
class DispatchStats:
    recovered: int = 0
    dead: int = 0
    enqueued: int = 0
    broker_errors: int = 0


Enqueue = Callable[[int], None]


def recover_jobs(session: Session, stale_seconds: float, backoff_seconds: float) -> DispatchStats:
    stats = DispatchStats()
    for job_id, state in session.execute(
        _RECOVER, {"stale": stale_seconds, "backoff": backoff_seconds}
    ).all():
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
        ids = list(session.execute(_DUE, {"stale": stale_seconds, "limit": limit}).scalars())
    for job_id in ids:
        try:
            with sessions.begin() as session:
                locked = session.execute(
                    sa.text("SELECT id FROM jobs WHERE id = :id AND state = 'queued' "
                            "FOR UPDATE SKIP LOCKED"), {"id": job_id}).scalar_one_or_none()
                if locked is None:
                    continue
                enqueue(job_id)
                session.execute(sa.text("UPDATE jobs SET enqueued_at = now(), updated_at = now() "
                                        "WHERE id = :id"), {"id": job_id})
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
