"""Jobs: the outbox rows, their lifecycle statements and the queries the CLI and API read.

The lifecycle (see :mod:`workers.jobs` and :mod:`workers.dispatch` for the orchestration):

- :func:`create_job` inserts a ``queued`` row, idempotently on ``idempotency_key``;
- the dispatcher picks :func:`due_job_ids`, locks each with :func:`lock_queued_job`
  (``FOR UPDATE SKIP LOCKED``), publishes it and calls :func:`mark_enqueued`;
  :func:`recover_stale_jobs` re-queues jobs whose worker died and failed jobs after a backoff;
- a worker claims a job with :func:`claim_job` (``queued`` -> ``running``, ``attempts + 1``),
  refreshes it with :func:`touch_heartbeat` and ends it with :func:`finish_job`; both are
  fenced on the attempt number, so a worker that lost its claim changes nothing;
- an operator lists jobs (:func:`list_jobs`, :func:`get_job`) and re-runs a finished one
  (:func:`requeue_job`).

State names are bound from :mod:`rafss_core.store.enums`, never written into the SQL; every
filter is a bound parameter. Like every repository, nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.enums import JobKind, JobState
from rafss_core.store.models import Delivery, Destination, Job, Result, Series, Task
from rafss_core.store.repositories.references import InvalidTransitionError

RERUN_NOTE = "re-run requested"
_NOT_REQUEUEABLE = (JobState.QUEUED.value, JobState.RUNNING.value)

# --- statements of the lifecycle (workers and dispatcher) ----------------------------------------

_CLAIM = sa.text("""
    UPDATE jobs SET state = :running, attempts = attempts + 1, started_at = now(),
        heartbeat_at = now(), updated_at = now(), finished_at = NULL, claimed_by = :worker
    WHERE id = :id AND state = :queued
    RETURNING attempts, kind""")

_FINISH = sa.text("""
    UPDATE jobs SET state = :state, last_error = :error, finished_at = now(),
        updated_at = now()
    WHERE id = :id AND attempts = :attempt AND state = :running
    RETURNING id""")

_HEARTBEAT = sa.text("UPDATE jobs SET heartbeat_at = now() WHERE id = :id "
                     "AND attempts = :a AND state = :running")

_RECOVER = sa.text("""
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts THEN :dead ELSE :queued END,
    last_error = coalesce(last_error || '; ', '') ||
                 CASE WHEN state = :running THEN 'worker lost (heartbeat stale)'
                      ELSE 'retrying' END,
    enqueued_at = NULL, updated_at = now()
WHERE (state = :running AND heartbeat_at < now() - make_interval(secs => :stale))
   OR (state = :failed AND
       updated_at < now() - make_interval(secs => least(:backoff * power(2, attempts - 1), 3600)))
RETURNING id, state
""")

_DUE = sa.text("""
SELECT id FROM jobs
WHERE state = :queued
  AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => :stale))
ORDER BY created_at
LIMIT :limit
""")

_LOCK_QUEUED = sa.text("SELECT id FROM jobs WHERE id = :id AND state = :queued "
                       "FOR UPDATE SKIP LOCKED")

_MARK_ENQUEUED = sa.text("UPDATE jobs SET enqueued_at = now(), updated_at = now() "
                         "WHERE id = :id")


def claim_job(session: Session, job_id: int,
              worker: str | None = None) -> tuple[int, str] | None:
    """Atomically move a ``queued`` job to ``running``; return ``(attempt, kind)``.
    ``worker`` (``host:pid``) is recorded as ``claimed_by``, for operators.

    None when the job is not queued (already claimed, finished, or missing).
    """
    row = session.execute(_CLAIM, {"id": job_id, "running": JobState.RUNNING.value,
                                   "queued": JobState.QUEUED.value,
                                   "worker": worker}).one_or_none()
    return None if row is None else (int(row.attempts), str(row.kind))


def finish_job(session: Session, job_id: int, attempt: int, state: str,
               error: str | None) -> bool:
    """Record the outcome of ``attempt``; False when that attempt no longer holds the job."""
    done = session.execute(_FINISH, {"state": state, "error": error, "id": job_id,
                                     "attempt": attempt,
                                     "running": JobState.RUNNING.value}).one_or_none()
    return done is not None


def touch_heartbeat(session: Session, job_id: int, attempt: int) -> None:
    """Refresh ``heartbeat_at`` while ``attempt`` still holds the running job."""
    session.execute(_HEARTBEAT, {"id": job_id, "a": attempt, "running": JobState.RUNNING.value})


def recover_stale_jobs(session: Session, stale_seconds: float,
                       backoff_seconds: float) -> list[tuple[int, str]]:
    """Re-queue (or kill) lost running jobs and failed jobs past their backoff.

    Returns ``(job_id, new_state)`` for each job changed; the new state is ``queued`` or
    ``dead`` (attempts used up).
    """
    rows = session.execute(_RECOVER, {
        "stale": stale_seconds, "backoff": backoff_seconds, "dead": JobState.DEAD.value,
        "queued": JobState.QUEUED.value, "running": JobState.RUNNING.value,
        "failed": JobState.FAILED.value,
    }).all()
    return [(int(job_id), str(state)) for job_id, state in rows]


def due_job_ids(session: Session, stale_seconds: float, limit: int) -> list[int]:
    """Queued jobs never enqueued, or enqueued ``stale_seconds`` ago and not picked up."""
    return [int(i) for i in session.execute(
        _DUE, {"stale": stale_seconds, "limit": limit, "queued": JobState.QUEUED.value}
    ).scalars()]


def lock_queued_job(session: Session, job_id: int) -> bool:
    """Lock the row if it is still queued (``FOR UPDATE SKIP LOCKED``); False otherwise."""
    locked = session.execute(_LOCK_QUEUED, {"id": job_id, "queued": JobState.QUEUED.value}
                             ).scalar_one_or_none()
    return locked is not None


def mark_enqueued(session: Session, job_id: int) -> None:
    """Stamp ``enqueued_at``: its message has been published."""
    session.execute(_MARK_ENQUEUED, {"id": job_id})


# --- creating jobs -------------------------------------------------------------------------------


def _check(value: str, allowed: type[JobKind] | type[JobState], what: str) -> str:
    """``value`` as an enum value, or ValueError naming the allowed values."""
    names = [member.value for member in allowed]
    if value not in names:
        raise ValueError(f"unknown job {what} {value!r}; expected one of: {', '.join(names)}")
    return str(value)


def create_job(session: Session, *, kind: JobKind | str, idempotency_key: str,
               payload: dict[str, Any], task_id: int | None = None,
               series_id: int | None = None,
               reference_set_id: int | None = None,
               max_attempts: int | None = None) -> tuple[int, bool]:
    """Queue a job of any kind (the outbox row); idempotent on ``idempotency_key``.
    ``max_attempts`` (else the column's default) is how often it may fail before it is dead.

    Returns ``(job_id, created)``; ``created`` is False when a job with this key already
    existed, which is then returned unchanged.
    """
    kind_value = _check(str(kind), JobKind, "kind")
    job_id = session.execute(
        pg_insert(Job).values(kind=kind_value, idempotency_key=idempotency_key,
                              series_id=series_id, task_id=task_id,
                              reference_set_id=reference_set_id, payload=payload,
                              **({"max_attempts": max_attempts} if max_attempts else {}))
        .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Job.id)
    ).scalar_one_or_none()
    if job_id is not None:
        return int(job_id), True
    existing = session.execute(
        sa.select(Job.id).where(Job.idempotency_key == idempotency_key)
    ).scalar_one()
    return int(existing), False


# --- reading jobs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """One job as listed: no payload, names instead of foreign keys where there is one."""

    id: int
    kind: str
    state: str
    task: str | None
    series_id: int | None
    series_instance_uid: str | None
    attempts: int
    max_attempts: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True)
class JobResultInfo:
    """The DICOM-SEG a job produced."""

    seg_sop_instance_uid: str
    path: str
    details: dict[str, Any]
    report_path: str | None = None


@dataclass(frozen=True)
class JobDeliveryInfo:
    """Sending a job's result to one destination."""

    destination: str
    status: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class JobDetail(JobRow):
    """One job with everything about it: payload, key, result and deliveries."""

    payload: dict[str, Any]
    idempotency_key: str
    result: JobResultInfo | None
    deliveries: tuple[JobDeliveryInfo, ...]


def _job_columns() -> sa.Select[Any]:
    """The select behind :class:`JobRow`: jobs with their task name and series UID."""
    return (
        sa.select(Job.id, Job.kind, Job.state, Task.name.label("task"), Job.series_id,
                  Series.series_instance_uid, Job.attempts, Job.max_attempts, Job.created_at,
                  Job.finished_at, Job.last_error)
        .outerjoin(Task, Task.id == Job.task_id)
        .outerjoin(Series, Series.id == Job.series_id)
    )


def _job_row(row: sa.Row[Any]) -> JobRow:
    return JobRow(
        id=int(row.id), kind=str(row.kind), state=str(row.state), task=row.task,
        series_id=row.series_id, series_instance_uid=row.series_instance_uid,
        attempts=int(row.attempts), max_attempts=int(row.max_attempts),
        created_at=row.created_at, finished_at=row.finished_at, last_error=row.last_error,
    )


def list_jobs(session: Session, *, state: str | None = None, task: str | None = None,
              kind: str | None = None, limit: int = 50, offset: int = 0) -> list[JobRow]:
    """Jobs newest first, optionally filtered by state, task name and kind.

    An unknown ``state`` or ``kind`` raises ValueError naming the allowed values; an unknown
    task name simply matches nothing.
    """
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    q = _job_columns()
    if state is not None:
        q = q.where(Job.state == _check(state, JobState, "state"))
    if kind is not None:
        q = q.where(Job.kind == _check(kind, JobKind, "kind"))
    if task is not None:
        q = q.where(Task.name == task)
    rows = session.execute(q.order_by(Job.id.desc()).limit(limit).offset(offset)).all()
    return [_job_row(r) for r in rows]


def _job_result(session: Session, job_id: int) -> tuple[int, JobResultInfo] | None:
    row = session.execute(
        sa.select(Result.id, Result.seg_sop_instance_uid, Result.path, Result.details,
                  Result.report_path)
        .where(Result.job_id == job_id)
    ).one_or_none()
    if row is None:
        return None
    return int(row.id), JobResultInfo(row.seg_sop_instance_uid, row.path, dict(row.details),
                                      row.report_path)


def _job_deliveries(session: Session, result_id: int) -> tuple[JobDeliveryInfo, ...]:
    rows = session.execute(
        sa.select(Destination.name, Delivery.status, Delivery.attempts, Delivery.last_error)
        .join(Destination, Destination.id == Delivery.destination_id)
        .where(Delivery.result_id == result_id).order_by(Delivery.id)
    ).all()
    return tuple(JobDeliveryInfo(r.name, str(r.status), int(r.attempts), r.last_error)
                 for r in rows)


def get_job(session: Session, job_id: int) -> JobDetail | None:
    """One job with its payload, result and deliveries; None when there is no such job."""
    row = session.execute(
        _job_columns().add_columns(Job.payload, Job.idempotency_key).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    found = _job_result(session, job_id)
    base = _job_row(row)
    return JobDetail(
        **{f.name: getattr(base, f.name) for f in fields(JobRow)},
        payload=dict(row.payload or {}),
        idempotency_key=row.idempotency_key,
        result=None if found is None else found[1],
        deliveries=() if found is None else _job_deliveries(session, found[0]),
    )


# --- re-running jobs -----------------------------------------------------------------------------


def requeue_job(session: Session, job_id: int) -> str:
    """Put a ``failed``, ``dead`` or ``succeeded`` job back to ``queued``; return its old state.

    Attempts restart at 0, ``enqueued_at`` and ``finished_at`` are cleared (the dispatcher
    publishes it on its next tick) and ``last_error`` keeps its history with
    ``'; re-run requested'`` appended. The row is locked first, so a concurrent claim or
    re-run waits. LookupError when there is no such job; InvalidTransitionError (a ValueError)
    when it is queued or running, or a succeeded reference import (its candidate exists;
    running it again would store the slices twice).
    """
    row = session.execute(
        sa.select(Job.state, Job.kind).where(Job.id == job_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise LookupError(f"no job {job_id}")
    current, kind = row
    previous = JobState(current).value
    if previous == JobState.SUCCEEDED.value and kind == JobKind.EMBED_REFERENCES.value:
        raise InvalidTransitionError(f"job {job_id} already imported its references as a "
                                     "candidate; import again instead of re-running it")
    if previous in _NOT_REQUEUEABLE:
        raise InvalidTransitionError(f"job {job_id} is {previous}: only a failed, dead or "
                                     "succeeded job can be re-run")
    session.execute(
        sa.update(Job).where(Job.id == job_id).values(
            state=JobState.QUEUED.value, attempts=0, enqueued_at=None, finished_at=None,
            last_error=sa.func.coalesce(Job.last_error + "; ", "") + RERUN_NOTE,
            updated_at=sa.func.now(),
        )
    )
    return previous
