from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from celery import Celery

from rafss_core.store.enums import JobKind
from rafss_core.store.models import Job
from workers.dispatch import celery_enqueue, dispatch_once
from workers.jobs import claim, run_job


def _job(sessions, **values) -> int:
    with sessions.begin() as s:
        job = Job(kind=JobKind.SEGMENT, idempotency_key=uuid.uuid4().hex, **values)
        s.add(job)
        s.flush()
        return job.id


def _get(sessions, job_id) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _set(sessions, job_id, sql: str) -> None:
    with sessions.begin() as s:
        s.execute(sa.text(f"UPDATE jobs SET {sql} WHERE id = :id"), {"id": job_id})


def test_dispatch_enqueues_each_queued_job_once(worker_sessions):
    job_id = _job(worker_sessions)
    sent: list[int] = []
    dispatch_once(worker_sessions, sent.append)
    dispatch_once(worker_sessions, sent.append)  # already enqueued and not stale: not again
    assert sent.count(job_id) == 1
    assert _get(worker_sessions, job_id).enqueued_at is not None
    # the message was lost (e.g. broker restart): after the stale period it is sent again
    _set(worker_sessions, job_id, "enqueued_at = now() - interval '10 minutes'")
    dispatch_once(worker_sessions, sent.append, stale_seconds=60)
    assert sent.count(job_id) == 2


def test_broker_outage_keeps_jobs_queued(worker_sessions):
    job_id = _job(worker_sessions)
    down = Celery("down", broker="redis://127.0.0.1:1/0")  # nothing listens on port 1
    down.conf.broker_connection_retry = False
    down.conf.broker_connection_max_retries = 0
    stats = dispatch_once(worker_sessions, celery_enqueue(down))
    assert stats.broker_errors == 1
    job = _get(worker_sessions, job_id)
    assert job.state == "queued" and job.enqueued_at is None


def test_real_redis_broker_receives_the_job(worker_sessions):
    app = Celery("rafss-test", broker="redis://127.0.0.1:6379/15")
    queue = f"model-{uuid.uuid4().hex[:6]}"
    app.conf.task_routes = {"rafss.run_job": {"queue": queue}}
    job_id = _job(worker_sessions)
    sent = []

    def enqueue(i: int) -> None:
        sent.append(i)
        celery_enqueue(app)(i)

    dispatch_once(worker_sessions, enqueue)
    assert job_id in sent
    with app.connection_for_read() as conn:
        q = conn.SimpleQueue(queue)
        ids = []
        while True:
            try:
                msg = q.get(timeout=2)
            except q.Empty:
                break
            ids.append(msg.payload[0][0])
            msg.ack()
        q.close()
    assert job_id in ids


def test_claim_is_atomic_and_fenced(worker_sessions):
    job_id = _job(worker_sessions)
    first = claim(worker_sessions, job_id)
    assert first is not None and first.attempt == 1
    assert claim(worker_sessions, job_id) is None  # a duplicate message does nothing
    assert _get(worker_sessions, job_id).state == "running"


def test_run_job_success_failure_and_dead_letter(worker_sessions):
    ran: list[int] = []
    ok = _job(worker_sessions)
    assert run_job(worker_sessions, ok, {JobKind.SEGMENT: lambda c: ran.append(c.job_id)}) \
        == "succeeded"
    assert ran == [ok] and _get(worker_sessions, ok).state == "succeeded"
    assert run_job(worker_sessions, ok, {JobKind.SEGMENT: lambda c: ran.append(1)}) is None
    assert ran == [ok]  # a finished job never runs again

    def boom(_):
        raise RuntimeError("decoder exploded")

    bad = _job(worker_sessions, max_attempts=2)
    assert run_job(worker_sessions, bad, {JobKind.SEGMENT: boom}) == "failed"
    job = _get(worker_sessions, bad)
    assert job.state == "failed" and "decoder exploded" in job.last_error
    # backoff elapsed: re-queued, runs again, fails again -> attempts used up -> dead
    _set(worker_sessions, bad, "updated_at = now() - interval '1 hour'")
    dispatch_once(worker_sessions, lambda i: None, backoff_seconds=1)
    assert _get(worker_sessions, bad).state == "queued"
    assert run_job(worker_sessions, bad, {JobKind.SEGMENT: boom}) == "failed"
    _set(worker_sessions, bad, "updated_at = now() - interval '1 hour'")
    stats = dispatch_once(worker_sessions, lambda i: None, backoff_seconds=1)
    assert stats.dead >= 1
    assert _get(worker_sessions, bad).state == "dead"


def test_worker_lost_job_is_requeued_and_old_attempt_cannot_finish(worker_sessions):
    job_id = _job(worker_sessions)
    old = claim(worker_sessions, job_id)
    assert old is not None
    _set(worker_sessions, job_id, "heartbeat_at = now() - interval '5 minutes'")
    stats = dispatch_once(worker_sessions, lambda i: None, stale_seconds=60)
    assert stats.recovered >= 1
    job = _get(worker_sessions, job_id)
    assert job.state == "queued" and "worker lost" in job.last_error
    new = claim(worker_sessions, job_id)
    assert new is not None and new.attempt == 2
    from workers.jobs import _finish

    assert not _finish(worker_sessions, old, "succeeded", None)  # fenced out
    assert _finish(worker_sessions, new, "succeeded", None)


@pytest.fixture(autouse=True)
def _quiet_other_jobs(worker_sessions):
    """Each test sees only its own queued jobs (the module shares one database)."""
    yield
    with worker_sessions.begin() as s:
        s.execute(sa.text("UPDATE jobs SET state = 'succeeded' WHERE state IN "
                          "('queued', 'running', 'failed')"))
