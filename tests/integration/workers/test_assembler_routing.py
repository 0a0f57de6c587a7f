from __future__ import annotations

import uuid

import sqlalchemy as sa

from rafss_core.store.enums import SeriesState
from rafss_core.store.models import AllowedSource, Job, RoutingRule, Series
from rafss_core.store.repositories import (
    InstanceRecord,
    LabelSpec,
    create_reference_set,
    create_task,
    record_instance,
)
from workers.assembler import close_quiet_series
from workers.routing import SEG_SOP_CLASS, job_key, route_closed_series

MR = "1.2.840.10008.5.1.4.1.1.4"


def _series(session, n=3, ae="MODALITY", description="cine SAX", modality="MR",
            sop_class=MR) -> tuple[int, str, list[str]]:
    series_uid = f"2.25.{uuid.uuid4().int}"
    study_uid = f"2.25.{uuid.uuid4().int}"
    uids = [f"2.25.{uuid.uuid4().int}" for _ in range(n)]
    series_id = 0
    for uid in uids:
        rec = record_instance(session, InstanceRecord(
            study_instance_uid=study_uid, series_instance_uid=series_uid, sop_instance_uid=uid,
            sop_class_uid=sop_class, spool_path=f"/spool/{uid}.dcm", modality=modality,
            body_part="HEART", series_description=description, calling_ae=ae))
        series_id = rec.series_id
    return series_id, series_uid, uids


def _age(session, series_id: int, seconds: float) -> None:
    session.execute(sa.update(Series).where(Series.id == series_id).values(
        last_instance_at=sa.func.now() - sa.text(f"interval '{seconds} seconds'")))


def _state(sessions, series_id: int) -> str:
    with sessions() as s:
        return s.get(Series, series_id).state


def test_quiet_period_closes_only_quiet_series(worker_sessions):
    with worker_sessions.begin() as s:
        quiet, _, _ = _series(s)
        busy, _, _ = _series(s)
        _age(s, quiet, 30)
        _age(s, busy, 2)
    with worker_sessions.begin() as s:
        closed = close_quiet_series(s, default_quiet_seconds=10)
    assert quiet in closed and busy not in closed
    assert _state(worker_sessions, quiet) == SeriesState.CLOSED
    assert _state(worker_sessions, busy) == SeriesState.OPEN
    # a late instance re-opens a closed series: it is assembled again, nothing is lost
    with worker_sessions.begin() as s:
        series_uid = s.get(Series, quiet).series_instance_uid
        study = s.execute(sa.text("select study_instance_uid from studies st join series se on "
                                  "se.study_id = st.id where se.id = :i"), {"i": quiet}).scalar()
        record_instance(s, InstanceRecord(study, series_uid, f"2.25.{uuid.uuid4().int}", MR,
                                          "/spool/late.dcm", calling_ae="MODALITY"))
    assert _state(worker_sessions, quiet) == SeriesState.OPEN


def test_quiet_period_per_source_ae(worker_sessions):
    with worker_sessions.begin() as s:
        s.add(AllowedSource(ae_title="SLOWCT", series_quiet_seconds=120))
        slow, _, _ = _series(s, ae="SLOWCT")
        normal, _, _ = _series(s, ae="FASTMR")
        _age(s, slow, 60)
        _age(s, normal, 60)
    with worker_sessions.begin() as s:
        closed = close_quiet_series(s, default_quiet_seconds=10)
    assert normal in closed and slow not in closed


def _task(session, name: str) -> int:
    task = create_task(session, name=name, modality="MR", labels=[LabelSpec(1, "LV")],
                       embedder_id="dino", segmenter_id="sam", actor="test")
    create_reference_set(session, task_id=task.id, actor="test")
    return task.id


def test_routing_rules_create_one_job_per_task_idempotently(worker_sessions):
    tag = uuid.uuid4().hex[:6]
    with worker_sessions.begin() as s:
        cardiac = _task(s, f"cardiac-{tag}")
        other = _task(s, f"other-{tag}")
        s.add_all([
            RoutingRule(task_id=cardiac, modality="mr", series_description_regex=r"\bsax\b"),
            RoutingRule(task_id=cardiac, calling_ae="MODALITY"),  # same task twice: one job
            RoutingRule(task_id=other, modality="CT"),
            RoutingRule(task_id=other, calling_ae="NOT-THIS-AE"),
        ])
        series_id, series_uid, uids = _series(s)
        s.execute(sa.update(Series).where(Series.id == series_id).values(state="closed"))
    with worker_sessions.begin() as s:
        routed = [r for r in route_closed_series(s) if r.series_id == series_id]
    assert [(r.task_id, r.created) for r in routed] == [(cardiac, True)]
    assert _state(worker_sessions, series_id) == SeriesState.ROUTED
    with worker_sessions() as s:
        job = s.get(Job, routed[0].job_id)
        assert job.state == "queued" and job.kind == "segment"
        # the task's models ("sam") resolve to nothing: keyed by backend, spec and embedder
        assert job.idempotency_key == job_key(series_uid, uids[::-1], f"cardiac-{tag}", 1,
                                              ["sam2-memory", "sam", "dino"])
    # the same content routed again (e.g. after a crash) creates no second job
    with worker_sessions.begin() as s:
        s.execute(sa.update(Series).where(Series.id == series_id).values(state="closed"))
    with worker_sessions.begin() as s:
        again = [r for r in route_closed_series(s) if r.series_id == series_id]
    assert [(r.job_id, r.created) for r in again] == [(routed[0].job_id, False)]


def test_job_key_changes_with_content_and_versions():
    base = job_key("1.2", ["3", "4"], "t", 1, ["sam", "dino"])
    assert base == job_key("1.2", ["4", "3"], "t", 1, ["sam", "dino"])
    assert base != job_key("1.2", ["3", "4", "5"], "t", 1, ["sam", "dino"])
    assert base != job_key("1.2", ["3", "4"], "t", 2, ["sam", "dino"])
    assert base != job_key("1.2", ["3", "4"], "t", 1, ["sam2", "dino"])


def test_received_seg_is_recorded_not_segmented(worker_sessions):
    with worker_sessions.begin() as s:
        task = _task(s, f"any-{uuid.uuid4().hex[:6]}")
        s.add(RoutingRule(task_id=task))  # matches everything
        series_id, _, _ = _series(s, modality="SEG", sop_class=SEG_SOP_CLASS, n=1)
        s.execute(sa.update(Series).where(Series.id == series_id).values(state="closed"))
    with worker_sessions.begin() as s:
        routed = route_closed_series(s)
    assert all(r.series_id != series_id for r in routed)
    assert _state(worker_sessions, series_id) == SeriesState.ROUTED
