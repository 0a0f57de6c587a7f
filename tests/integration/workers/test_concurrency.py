"""Several SCPs and several service loops at once (as on many hosts): a series is recorded once
and becomes exactly one job per task, however the work races."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from rafss_core.store.models import Instance, Job, RoutingRule, Series
from rafss_core.store.repositories import InstanceRecord, LabelSpec, create_task, record_instance
from workers.assembler import close_quiet_series
from workers.routing import route_closed_series

MR = "1.2.840.10008.5.1.4.1.1.4"


def _race(workers: int, fn: Callable[[int], None]) -> list[BaseException]:
    """Run ``fn(i)`` in ``workers`` threads released together; return their errors."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_two_scps_recording_one_series_make_one_series(worker_sessions):
    study, series = f"2.25.{uuid.uuid4().int}", f"2.25.{uuid.uuid4().int}"
    uids = [f"2.25.{uuid.uuid4().int}" for _ in range(24)]

    def scp(i: int) -> None:  # each SCP receives every other instance, and one duplicate
        from services.ingest import HeaderInfo
        from services.scp import store_instance

        for uid in [*uids[i::2], uids[0]]:
            # exactly what the SCP's C-STORE handler calls, once: no retry hides a race
            store_instance(HeaderInfo(InstanceRecord(
                study_instance_uid=study, series_instance_uid=series, sop_instance_uid=uid,
                sop_class_uid=MR, modality="MR", spool_path=f"/spool/{uid}.dcm")),
                worker_sessions)

    assert _race(2, scp) == []
    with worker_sessions() as s:
        rows = s.execute(sa.select(Series.id).where(Series.series_instance_uid == series)).all()
        count = s.execute(sa.select(sa.func.count()).select_from(Instance).join(Series).where(
            Series.series_instance_uid == series)).scalar_one()
    assert len(rows) == 1 and count == len(uids)


def test_racing_loops_make_exactly_one_job_per_series(worker_sessions):
    with worker_sessions.begin() as s:
        task = create_task(s, name=f"race-{uuid.uuid4().hex[:6]}", modality="MR",
                           labels=[LabelSpec(1, "LV")], embedder_id="e", segmenter_id="m",
                           actor="t")
        s.add(RoutingRule(task_id=task.id, modality="MR", calling_ae="RACE"))
        series_ids = []
        for _ in range(12):
            uid = f"2.25.{uuid.uuid4().int}"
            for _ in range(3):
                rec = record_instance(s, InstanceRecord(
                    study_instance_uid=f"2.25.{uuid.uuid4().int}", series_instance_uid=uid,
                    sop_instance_uid=f"2.25.{uuid.uuid4().int}", sop_class_uid=MR,
                    modality="MR", calling_ae="RACE", spool_path="/spool/x.dcm"))
            series_ids.append(rec.series_id)
        s.execute(sa.update(Series).where(Series.id.in_(series_ids)).values(
            last_instance_at=sa.func.now() - sa.text("interval '1 hour'")))

    def loop(_: int) -> None:  # what every worker host's service loop does, over and over
        for _ in range(5):
            with worker_sessions.begin() as s:
                close_quiet_series(s, default_quiet_seconds=10)
            with worker_sessions.begin() as s:
                route_closed_series(s, limit=3)

    assert _race(4, loop) == []
    with worker_sessions() as s:
        jobs = s.execute(sa.select(Job.series_id).where(Job.series_id.in_(series_ids),
                                                        Job.task_id == task.id)).scalars().all()
    assert sorted(jobs) == sorted(series_ids)  # every series once, none twice
