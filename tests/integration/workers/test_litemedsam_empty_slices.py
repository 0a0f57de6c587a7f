"""Regression (issue 19): a series that extends beyond the organs, through the worker with the
default backend (``litemedsam-box``, real weights). Slices on which the references vote every
label absent used to fail the whole job (``torch.cat([])``), so no SEG was sent. Now the job
succeeds, the SEG reaches a real dcmtk ``storescp``, and the empty slices' frames are omitted
while every source instance stays referenced, as for ``sam2-memory``."""

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
from rafss_core.datasets.annotated import AnnotatedVolume
from rafss_core.store.enums import DeliveryStatus, JobKind
from rafss_core.store.models import Delivery, Job, Result, Task
from rafss_core.store.repositories.deliveries import add_destination
from rafss_core.store.repositories.instances import InstanceRecord, record_instance
from rafss_core.store.repositories.jobs import get_job
from services.scu import RetryPolicy, deliver_due
from tests.factories import acdc_case, volume_to_mr_series
from tests.integration.services.peers import HOST, dcmtk_storescp
from workers.jobs import run_job
from workers.segment_job import WorkerContext, run_segment_job

pytestmark = [pytest.mark.slow, pytest.mark.data]
MR = "1.2.840.10008.5.1.4.1.1.4"
PAD = 2  # blank slices added above and below the heart


def _padded(case: str) -> tuple:
    """An ACDC volume with ``PAD`` blank, unannotated slices at each end (the same blank
    images for every case, so the target's blank slices retrieve the references' blanks)."""
    volume, labels = acdc_case(case)
    shape = volume.shape[1:]
    rng = np.random.default_rng(0)
    low = float(np.percentile(volume.array, 1))
    blank = (low + 0.01 * rng.random((PAD, *shape))).astype(volume.array.dtype)
    array = np.concatenate([blank, volume.array, blank])
    labels = np.concatenate([np.zeros((PAD, *shape), labels.dtype), labels,
                             np.zeros((PAD, *shape), labels.dtype)])
    return volume.__class__(array, volume.spacing, volume.origin, volume.direction,
                            volume.modality), labels


def test_series_beyond_the_organs_gets_a_seg_with_empty_frames_omitted(
        worker_sessions, worker_db_url, tmp_path):
    from rafss_core.store.engine import make_engine

    settings = Settings(data_dir=tmp_path, database_url=worker_db_url, models="litemedsam",
                        backend="litemedsam-box")
    app = App(worker_sessions, settings)
    name = f"beyond-{uuid.uuid4().hex[:6]}"
    create_task(app, "test", name=name, modality="MR", labels=["1:RV", "2:MYO", "3:LV"], k=2)
    ref_volume, ref_labels = _padded("patient003_frame01")
    import_volumes(app, "test", name, [AnnotatedVolume(
        ref_volume, ref_labels.astype(np.int16), "1.2.3.1", "1.2.3.2",
        [f"1.2.3.3.{z}" for z in range(ref_volume.num_slices)])], approve=True)
    volume, _ = _padded("patient001_frame01")
    files = volume_to_mr_series(volume, tmp_path / "series", seed=uuid.uuid4().hex)
    with worker_sessions.begin() as s:
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            rec = record_instance(s, InstanceRecord(
                study_instance_uid=ds.StudyInstanceUID, series_instance_uid=ds.SeriesInstanceUID,
                sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=MR, spool_path=str(f),
                modality="MR"))
        task_id = s.query(Task.id).filter(Task.name == name).scalar()
        job = Job(kind=JobKind.SEGMENT, idempotency_key=uuid.uuid4().hex, task_id=task_id,
                  series_id=rec.series_id)
        s.add(job)
        s.flush()
        job_id = job.id
    engine = make_engine(worker_db_url)
    with dcmtk_storescp(tmp_path / "pacs") as scp:
        with worker_sessions.begin() as s:
            add_destination(s, name=f"pacs-{uuid.uuid4().hex[:8]}", ae_title=scp.ae_title,
                            host=HOST, port=scp.port)
        state = run_job(worker_sessions, job_id, {JobKind.SEGMENT: functools.partial(
            run_segment_job, WorkerContext(settings, engine, worker_sessions))})
        with worker_sessions() as s:
            assert state == "succeeded", get_job(s, job_id).last_error
            result_id = s.query(Result.id).filter(Result.job_id == job_id).scalar()
            ids = [d.id for d in s.query(Delivery).filter(Delivery.result_id == result_id)]
        outcomes = deliver_due(worker_sessions, policy=RetryPolicy(0.05, 2.0, 3), ids=ids)
        received = [pydicom.dcmread(p) for p in scp.files()]
    engine.dispose()
    assert outcomes and {o.status for o in outcomes} == {DeliveryStatus.SUCCEEDED}
    seg = next(ds for ds in received if ds.Modality == "SEG")
    sop_uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    framed = {str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
              for fg in seg.PerFrameFunctionalGroupsSequence}
    blank = set(sop_uids[:PAD] + sop_uids[-PAD:])
    assert framed and not framed & blank  # the blank slices' empty frames are omitted
    referenced = {str(i.ReferencedSOPInstanceUID)
                  for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(sop_uids)  # every source instance stays referenced
