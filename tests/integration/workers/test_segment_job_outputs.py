"""The segment job's outputs: the SEG, the TID 1500 report next to it, per-slice confidence in
the result, and slices below the task's similarity threshold flagged and left unsegmented."""

from __future__ import annotations

import functools
import uuid

import numpy as np
import pydicom
import pytest

from rafss_core.app import App
from rafss_core.app.references import import_volumes
from rafss_core.app.tasks import create_task
from rafss_core.config import Settings
from rafss_core.datasets.annotated import nifti_volumes
from rafss_core.store.enums import JobKind
from rafss_core.store.models import Job, Task
from rafss_core.store.repositories.instances import InstanceRecord, record_instance
from rafss_core.store.repositories.jobs import get_job, requeue_job
from tests.factories import ACDC, acdc_case, volume_to_mr_series
from workers.jobs import run_job
from workers.segment_job import WorkerContext, run_segment_job

MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture
def segmented(worker_sessions, worker_db_url, tmp_path):
    """A tiny-random task with approved ACDC references, a received series and a run job."""
    from rafss_core.store.engine import make_engine

    settings = Settings(data_dir=tmp_path, database_url=worker_db_url, models="tiny-random",
                        backend="sam2-memory")
    app = App(worker_sessions, settings)
    name = f"flag-{uuid.uuid4().hex[:6]}"
    create_task(app, "test", name=name, modality="MR", labels=["1:RV", "2:MYO", "3:LV"], k=2)
    refs = nifti_volumes(ACDC / "imagesTr", ACDC / "labelsTr", ["patient003_frame01"], "MR")
    import_volumes(app, "test", name, refs, approve=True)
    volume, _ = acdc_case("patient001_frame01")
    files = volume_to_mr_series(volume, tmp_path / "series", seed=uuid.uuid4().hex)
    with worker_sessions.begin() as s:
        series_id = None
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            rec = record_instance(s, InstanceRecord(
                study_instance_uid=ds.StudyInstanceUID, series_instance_uid=ds.SeriesInstanceUID,
                sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=MR, spool_path=str(f),
                modality="MR"))
            series_id = rec.series_id
        task_id = s.query(Task.id).filter(Task.name == name).scalar()
        job = Job(kind=JobKind.SEGMENT, idempotency_key=uuid.uuid4().hex, task_id=task_id,
                  series_id=series_id)
        s.add(job)
        s.flush()
        job_id = job.id
    engine = make_engine(worker_db_url)
    ctx = WorkerContext(settings, engine, worker_sessions)

    def run() -> dict:
        state = run_job(worker_sessions, job_id,
                        {JobKind.SEGMENT: functools.partial(run_segment_job, ctx)})
        with worker_sessions() as s:
            detail = get_job(s, job_id)
        assert state == "succeeded", detail.last_error
        return detail

    yield run, job_id, task_id, files
    engine.dispose()


def test_low_similarity_slices_are_flagged_and_left_empty(segmented, worker_sessions):
    from rafss_core.dicom.report import FLAGGED_SLICES, read_measurements, read_volumes
    from rafss_core.dicom.seg import read_seg
    from rafss_core.dicom.series import load_series

    run, job_id, task_id, files = segmented
    first = run()
    sims = np.array(first.result.details["slice_similarity"])
    assert len(sims) == len(files) and first.result.details["flagged_slices"] == []
    assert first.result.report_path and set(first.result.details["slice_object_scores"]) == {
        "RV", "MYO", "LV"}
    threshold = float(np.median(sims))
    with worker_sessions.begin() as s:
        s.get(Task, task_id).min_similarity = threshold
        requeue_job(s, job_id)
    second = run()
    flagged = second.result.details["flagged_slices"]
    assert flagged == [int(z) for z in np.flatnonzero(sims < threshold)] and flagged
    labels = read_seg(second.result.path, load_series(files)).labels
    assert not labels[flagged].any()  # flagged slices carry no segmentation
    report = pydicom.dcmread(second.result.report_path)
    assert set(read_measurements(report, FLAGGED_SLICES).values()) == {float(len(flagged))}
    voxel_ml = float(np.prod(load_series(files).volume.spacing)) / 1000
    volumes = read_volumes(report)
    for number in (1, 2, 3):
        key = next(k for k in volumes if k.endswith(f"(segment {number})"))
        assert volumes[key] == pytest.approx(float((labels == number).sum()) * voxel_ml,
                                             abs=1e-3)
