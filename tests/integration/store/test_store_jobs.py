"""The jobs repository on a real server: listing, detail, re-run, idempotent creation, stats.

Every test makes its own task (a unique name) and filters on it, so the shared database's other
jobs never get in the way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import DeliveryStatus, JobKind, JobState
from rafss_core.store.models import Delivery, Destination, Job, Result, Series, Study, Task
from rafss_core.store.repositories.jobs import (
    JobDetail,
    JobRow,
    claim_job,
    create_job,
    due_job_ids,
    finish_job,
    get_job,
    list_jobs,
    requeue_job,
    touch_heartbeat,
)
from rafss_core.store.repositories.stats import service_stats

INJECTION = "queued'; DROP TABLE jobs; --"


def _uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


@dataclass(frozen=True)
class Place:
    """A task and a series of the test's own."""

    task_id: int
    task: str
    series_id: int
    series_uid: str


def _place(sessions: sessionmaker[Session]) -> Place:
    name = f"jobs-{uuid.uuid4().hex[:10]}"
    series_uid = _uid()
    with sessions.begin() as s:
        task = Task(name=name, modality="MR", embedder_id="test-embedder",
                    segmenter_id="sam2.1-tiny-random")
        study = Study(study_instance_uid=_uid())
        s.add_all([task, study])
        s.flush()
        series = Series(series_instance_uid=series_uid, study_id=study.id, modality="MR")
        s.add(series)
        s.flush()
        return Place(task.id, name, series.id, series_uid)


def _job(sessions: sessionmaker[Session], place: Place, kind: JobKind = JobKind.SEGMENT,
         payload: dict | None = None) -> int:
    with sessions.begin() as s:
        job_id, created = create_job(s, kind=kind, idempotency_key=uuid.uuid4().hex,
                                     payload=payload or {"task": place.task},
                                     task_id=place.task_id, series_id=place.series_id)
    assert created
    return job_id


def _set(sessions: sessionmaker[Session], job_id: int, **values: object) -> None:
    with sessions.begin() as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(**values))


def _row(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


# --- list_jobs ------------------------------------------------------------------------------------


def test_list_jobs_newest_first_with_names(db_session_factory):
    place = _place(db_session_factory)
    ids = [_job(db_session_factory, place) for _ in range(3)]
    with db_session_factory() as s:
        rows = list_jobs(s, task=place.task)
    assert [r.id for r in rows] == ids[::-1]
    first = rows[0]
    assert isinstance(first, JobRow)
    assert (first.kind, first.state, first.task) == ("segment", "queued", place.task)
    assert (first.series_id, first.series_instance_uid) == (place.series_id, place.series_uid)
    assert (first.attempts, first.max_attempts) == (0, 5)
    assert first.created_at is not None and first.finished_at is None and first.last_error is None


def test_list_jobs_filters_limit_and_offset(db_session_factory):
    place = _place(db_session_factory)
    seg_failed = _job(db_session_factory, place)
    deliver_failed = _job(db_session_factory, place, JobKind.DELIVER)
    seg_queued = _job(db_session_factory, place)
    for job_id in (seg_failed, deliver_failed):
        _set(db_session_factory, job_id, state=JobState.FAILED.value, last_error="boom")
    with db_session_factory() as s:
        assert [r.id for r in list_jobs(s, task=place.task, state="failed")] == [
            deliver_failed, seg_failed]
        assert [r.id for r in list_jobs(s, task=place.task, kind="segment")] == [
            seg_queued, seg_failed]
        assert [r.id for r in list_jobs(s, task=place.task, state="failed",
                                        kind=JobKind.DELIVER)] == [deliver_failed]
        assert [r.id for r in list_jobs(s, task=place.task, limit=1, offset=1)] == [
            deliver_failed]
        assert list_jobs(s, task=place.task, limit=0) == []
        every_failed = list_jobs(s, state="failed", limit=10_000)
        assert {seg_failed, deliver_failed} <= {r.id for r in every_failed}
        assert {r.state for r in every_failed} == {"failed"}
        assert list_jobs(s, task=f"no-such-task-{uuid.uuid4().hex}") == []


def test_list_jobs_rejects_unknown_state_and_kind(db_session_factory):
    with db_session_factory() as s:
        with pytest.raises(ValueError, match="queued, running, succeeded, failed, dead"):
            list_jobs(s, state="lost")
        with pytest.raises(ValueError, match="segment, deliver"):
            list_jobs(s, kind="teleport")
        with pytest.raises(ValueError):
            list_jobs(s, limit=-1)


def test_list_jobs_filters_are_bound_never_formatted(db_session_factory):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place)
    with db_session_factory() as s:
        with pytest.raises(ValueError, match="unknown job state"):
            list_jobs(s, state=INJECTION)
        assert list_jobs(s, task=INJECTION) == []
        assert list_jobs(s, task=place.task + "' OR '1'='1") == []
    with db_session_factory() as s:
        assert s.execute(sa.text("SELECT to_regclass('jobs')")).scalar_one() is not None
        assert [r.id for r in list_jobs(s, task=place.task)] == [job_id]


# --- get_job --------------------------------------------------------------------------------------


def _result_with_deliveries(sessions: sessionmaker[Session], job_id: int) -> str:
    seg_uid = _uid()
    with sessions.begin() as s:
        result = Result(job_id=job_id, seg_sop_instance_uid=seg_uid,
                        seg_series_instance_uid=_uid(), path=f"/results/{seg_uid}.dcm",
                        details={"dice": {"LV": 0.9}})
        suffix = uuid.uuid4().hex[:8]
        pacs = Destination(name=f"pacs-{suffix}", ae_title="PACS", host="127.0.0.1", port=104)
        viewer = Destination(name=f"viewer-{suffix}", ae_title="VIEW", host="127.0.0.1",
                             port=11112)
        s.add_all([result, pacs, viewer])
        s.flush()
        s.add(Delivery(result_id=result.id, destination_id=pacs.id,
                       status=DeliveryStatus.SUCCEEDED.value, attempts=1))
        s.flush()
        s.add(Delivery(result_id=result.id, destination_id=viewer.id,
                       status=DeliveryStatus.DEAD.value, attempts=5, last_error="refused"))
    return seg_uid


def test_get_job_with_result_and_deliveries(db_session_factory):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place, payload={"task": place.task, "instances": 12})
    _set(db_session_factory, job_id, state=JobState.SUCCEEDED.value, attempts=1,
         finished_at=sa.func.now())
    seg_uid = _result_with_deliveries(db_session_factory, job_id)
    with db_session_factory() as s:
        detail = get_job(s, job_id)
    assert isinstance(detail, JobDetail)
    assert (detail.id, detail.state, detail.task, detail.attempts) == (
        job_id, "succeeded", place.task, 1)
    assert detail.finished_at is not None
    assert detail.payload == {"task": place.task, "instances": 12}
    assert detail.idempotency_key == _row(db_session_factory, job_id).idempotency_key
    assert detail.result is not None
    assert detail.result.seg_sop_instance_uid == seg_uid
    assert detail.result.path == f"/results/{seg_uid}.dcm"
    assert detail.result.details == {"dice": {"LV": 0.9}}
    assert [(d.destination.split("-")[0], d.status, d.attempts, d.last_error)
            for d in detail.deliveries] == [("pacs", "succeeded", 1, None),
                                            ("viewer", "dead", 5, "refused")]


def test_get_job_without_result_and_missing(db_session_factory):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place)
    with db_session_factory() as s:
        detail = get_job(s, job_id)
        assert detail is not None
        assert detail.result is None and detail.deliveries == ()
        assert get_job(s, 2**62) is None


# --- requeue_job ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "error", "expected_error"), [
    ("failed", "RuntimeError: boom", "RuntimeError: boom; re-run requested"),
    ("dead", "worker lost (heartbeat stale)", "worker lost (heartbeat stale); re-run requested"),
    ("succeeded", None, "re-run requested"),
])
def test_requeue_job_puts_a_finished_job_back(db_session_factory, state, error, expected_error):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place)
    _set(db_session_factory, job_id, state=state, attempts=5, last_error=error,
         enqueued_at=sa.func.now(), finished_at=sa.func.now())
    with db_session_factory.begin() as s:
        assert requeue_job(s, job_id) == state
    job = _row(db_session_factory, job_id)
    assert (job.state, job.attempts, job.enqueued_at, job.finished_at) == (
        "queued", 0, None, None)
    assert job.last_error == expected_error
    with db_session_factory.begin() as s:  # the dispatcher sees it, and a worker can claim it
        assert job_id in due_job_ids(s, 60.0, 1_000_000)
        assert claim_job(s, job_id) == (1, "segment")


@pytest.mark.parametrize("state", ["queued", "running"])
def test_requeue_job_refuses_a_live_job(db_session_factory, state):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place)
    _set(db_session_factory, job_id, state=state, attempts=1)
    with db_session_factory.begin() as s, pytest.raises(ValueError, match=state):
        requeue_job(s, job_id)
    job = _row(db_session_factory, job_id)
    assert (job.state, job.attempts, job.last_error) == (state, 1, None)


def test_requeue_job_missing_raises_lookup_error(db_session_factory):
    with db_session_factory.begin() as s, pytest.raises(LookupError):
        requeue_job(s, 2**62)


# --- create_job -----------------------------------------------------------------------------------


def test_create_job_is_idempotent_on_its_key(db_session_factory):
    place = _place(db_session_factory)
    key = f"embed:{uuid.uuid4().hex}"
    with db_session_factory.begin() as s:
        first = create_job(s, kind=JobKind.EMBED_REFERENCES, idempotency_key=key,
                           payload={"n": 1}, task_id=place.task_id)
    with db_session_factory.begin() as s:
        again = create_job(s, kind="embed_references", idempotency_key=key, payload={"n": 2},
                           task_id=place.task_id)
    assert first[1] is True and again == (first[0], False)
    job = _row(db_session_factory, first[0])
    assert (job.kind, job.state, job.payload, job.task_id) == (
        "embed_references", "queued", {"n": 1}, place.task_id)
    assert job.series_id is None and job.reference_set_id is None


def test_create_job_rejects_an_unknown_kind(db_session_factory):
    with db_session_factory.begin() as s, pytest.raises(ValueError, match="segment"):
        create_job(s, kind="teleport", idempotency_key=uuid.uuid4().hex, payload={})


# --- lifecycle statements -------------------------------------------------------------------------


def test_claim_heartbeat_and_finish_are_fenced_on_the_attempt(db_session_factory):
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place, JobKind.DELIVER)
    with db_session_factory.begin() as s:
        assert claim_job(s, job_id) == (1, "deliver")
        assert claim_job(s, job_id) is None  # already running
        touch_heartbeat(s, job_id, 1)
        assert not finish_job(s, job_id, 2, JobState.SUCCEEDED.value, None)  # not its attempt
        assert finish_job(s, job_id, 1, JobState.FAILED.value, "E: x")
        assert not finish_job(s, job_id, 1, JobState.SUCCEEDED.value, None)  # not running
    job = _row(db_session_factory, job_id)
    assert (job.state, job.attempts, job.last_error) == ("failed", 1, "E: x")
    assert job.heartbeat_at is not None and job.finished_at is not None


# --- stats ----------------------------------------------------------------------------------------


def test_service_stats_and_metrics_count_jobs(db_session_factory):
    from prometheus_client import CollectorRegistry, generate_latest

    from services.api.metrics import DatabaseCollector

    with db_session_factory() as s:
        before = service_stats(s)
    place = _place(db_session_factory)
    job_id = _job(db_session_factory, place)
    _set(db_session_factory, job_id, state=JobState.SUCCEEDED.value, attempts=1,
         finished_at=sa.func.now())
    _result_with_deliveries(db_session_factory, job_id)
    with db_session_factory() as s:
        after = service_stats(s)
    done = ("segment", "succeeded")
    assert after.jobs[done] == before.jobs.get(done, 0) + 1
    assert len(after.latencies) == len(before.latencies) + 1
    assert after.latency_sum >= before.latency_sum
    assert after.dead_deliveries == before.dead_deliveries + 1
    assert after.delivery_failures == before.delivery_failures + 5  # the dead one's 5 attempts
    assert after.received - after.invalid >= 0
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(db_session_factory))
    text = generate_latest(registry).decode()
    assert f'rafss_deliveries_dead {float(after.dead_deliveries)}' in text
    assert f'rafss_jobs{{kind="segment",state="succeeded"}} {float(after.jobs[done])}' in text
    assert f"rafss_job_latency_seconds_count {float(len(after.latencies))}" in text
