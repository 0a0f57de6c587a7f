"""A checkpoint changed after import: `rafss models verify` fails and the worker refuses jobs."""

from __future__ import annotations

import functools
import uuid

from typer.testing import CliRunner

from rafss_core.app.tasks import new_task
from rafss_core.cli import app
from rafss_core.config import Settings
from rafss_core.segmentation.models import ModelRegistry
from rafss_core.store.enums import JobKind
from rafss_core.store.models import Job, Task
from rafss_core.store.repositories.instances import InstanceRecord, record_instance
from workers.jobs import run_job
from workers.routing import segmentation_key_parts
from workers.segment_job import WorkerContext, run_segment_job

MR = "1.2.840.10008.5.1.4.1.1.4"


def _imported_dino(data_dir) -> None:
    """Any weights file stands in for the DINOv2 checkpoint: only its hash matters here."""
    ckpt = data_dir / "dinov2_vits14_pretrain.pth"
    ckpt.write_bytes(uuid.uuid4().bytes * 1000)
    ModelRegistry.open(data_dir / "models").import_checkpoint("dinov2-s", ckpt)


def _tamper(data_dir) -> None:
    path = ModelRegistry.open(data_dir / "models").entries["dinov2-s"]["path"]
    with open(path, "r+b") as fh:
        fh.write(b"tampered")


def test_models_verify_exits_non_zero_on_a_changed_checkpoint(tmp_path):
    runner = CliRunner()
    _imported_dino(tmp_path)
    ok = runner.invoke(app, ["models", "verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "ok     litemedsam" in ok.output and "ok     dinov2-s" in ok.output
    _tamper(tmp_path)
    bad = runner.invoke(app, ["models", "verify", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert "dinov2-s" in bad.output and "rafss models import dinov2-s" in bad.output


def test_worker_refuses_a_job_whose_model_fails_verification(worker_sessions, worker_db_url,
                                                            tmp_path):
    from rafss_core.store.engine import make_engine

    _imported_dino(tmp_path)
    settings = Settings(data_dir=tmp_path, database_url=worker_db_url)
    name = f"tamper-{uuid.uuid4().hex[:6]}"
    with worker_sessions.begin() as s:
        task = new_task(s, name, "MR", ["1:LV"], "litemedsam,dinov2-s", settings.models_dir,
                        backend="litemedsam-box")
        assert task.backend == "litemedsam-box"
        # the job key names the backend and every checkpoint's hash
        parts = segmentation_key_parts(task, settings.models_dir)
        assert parts[0] == "litemedsam-box" and parts[1] == "litemedsam:79d8c9dca6db"
        assert parts[2].startswith("dinov2-s:") and len(parts[2]) == len("dinov2-s:") + 12
        uid = f"2.25.{uuid.uuid4().int}"
        rec = record_instance(s, InstanceRecord(
            study_instance_uid=f"2.25.{uuid.uuid4().int}",
            series_instance_uid=f"2.25.{uuid.uuid4().int}", sop_instance_uid=uid,
            sop_class_uid=MR, spool_path=str(tmp_path / f"{uid}.dcm"), modality="MR"))
        job = Job(kind=JobKind.SEGMENT, idempotency_key=uuid.uuid4().hex,
                  task_id=s.query(Task.id).filter(Task.name == name).scalar(),
                  series_id=rec.series_id)
        s.add(job)
        s.flush()
        job_id = job.id
    _tamper(tmp_path)
    engine = make_engine(worker_db_url)
    try:
        ctx = WorkerContext(settings, engine, worker_sessions)
        state = run_job(worker_sessions, job_id,
                        {JobKind.SEGMENT: functools.partial(run_segment_job, ctx)})
    finally:
        engine.dispose()
    assert state == "failed"
    with worker_sessions() as s:
        error = s.get(Job, job_id).last_error
    assert error.startswith("ModelVerificationError")
    assert "changed since import" in error and "rafss models import dinov2-s" in error
