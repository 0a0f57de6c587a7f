"""Retention on a real database and real files: exactly the eligible files go, nothing in
progress, nothing with a dead delivery, no reference data; --dry-run changes nothing; a pass
interrupted midway and run again leaves a consistent state."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from rafss_core.app import App
from rafss_core.app.retention import run_retention
from rafss_core.config import Settings
from rafss_core.store.enums import DeliveryStatus, JobKind, JobState, SeriesState
from rafss_core.store.models import Delivery, Instance, Job, Result, Series
from rafss_core.store.repositories import InstanceRecord, record_instance
from rafss_core.store.repositories.deliveries import add_destination

MR = "1.2.840.10008.5.1.4.1.1.4"
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)  # past both windows


def _series(sessions, root: Path, *, state=SeriesState.ROUTED, job=JobState.SUCCEEDED,
            delivery=DeliveryStatus.SUCCEEDED, n=2) -> dict:
    """A series with ``n`` spooled files, a segment job in ``job`` state, its SEG + report
    files and a delivery in ``delivery`` state (None: no job at all)."""
    files = []
    with sessions.begin() as s:
        series_uid = f"2.25.{uuid.uuid4().int}"
        for _ in range(n):
            uid = f"2.25.{uuid.uuid4().int}"
            path = root / "spool" / f"{uid}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 1000)
            rec = record_instance(s, InstanceRecord(
                study_instance_uid="2.25.1", series_instance_uid=series_uid, sop_instance_uid=uid,
                sop_class_uid=MR, spool_path=str(path), modality="MR", size_bytes=1000))
            files.append(path)
        series = s.get(Series, rec.series_id)
        series.state = state
        out = {"series_id": series.id, "spool": files, "results": []}
        if job is None:
            return out
        j = Job(kind=JobKind.SEGMENT, idempotency_key=uuid.uuid4().hex, series_id=series.id,
                state=job, finished_at=sa.func.now() if job == JobState.SUCCEEDED else None)
        s.add(j)
        s.flush()
        if job == JobState.SUCCEEDED:
            seg, sr = root / "results" / f"{j.id}.seg.dcm", root / "results" / f"{j.id}.sr.dcm"
            seg.parent.mkdir(parents=True, exist_ok=True)
            seg.write_bytes(b"s" * 500)
            sr.write_bytes(b"r" * 200)
            r = Result(job_id=j.id, seg_sop_instance_uid=f"2.25.{uuid.uuid4().int}",
                       seg_series_instance_uid="2.25.2", path=str(seg), report_path=str(sr))
            s.add(r)
            s.flush()
            dest = add_destination(s, name=f"d-{uuid.uuid4().hex[:8]}", ae_title="PACS",
                                   host="h", port=104)
            s.add(Delivery(result_id=r.id, destination_id=dest, status=delivery))
            out["results"] = [seg, sr]
            out["result_id"] = r.id
    return out


@pytest.fixture
def world(worker_sessions, tmp_path):
    app = App(worker_sessions, Settings(data_dir=tmp_path, spool_retention_hours=72,
                                        result_retention_days=30))
    memories = tmp_path / "memories" / "ab" / "ab12.safetensors"  # reference data
    memories.parent.mkdir(parents=True)
    memories.write_bytes(b"m")
    cases = {
        "delivered": _series(worker_sessions, tmp_path),
        "queued": _series(worker_sessions, tmp_path, job=JobState.QUEUED),
        "failed": _series(worker_sessions, tmp_path, job=JobState.FAILED),
        "dead delivery": _series(worker_sessions, tmp_path, delivery=DeliveryStatus.DEAD),
        "pending delivery": _series(worker_sessions, tmp_path, delivery=DeliveryStatus.PENDING),
        "assembling": _series(worker_sessions, tmp_path, state=SeriesState.OPEN, job=None),
        "recent": _series(worker_sessions, tmp_path),
    }
    with worker_sessions.begin() as s:  # its last instance arrived an hour before LATER
        s.get(Series, cases["recent"]["series_id"]).last_instance_at = \
            LATER - dt.timedelta(hours=1)
    return app, cases, memories


def _purged(sessions, series_id: int) -> list[bool]:
    with sessions() as s:
        return [p is not None for p in s.execute(sa.select(Instance.purged_at).where(
            Instance.series_id == series_id)).scalars()]


def test_exactly_the_eligible_files_go(world, worker_sessions):
    app, cases, memories = world
    dry = run_retention(app, "test", dry_run=True, now=LATER)
    assert all(p.exists() for c in cases.values() for p in c["spool"] + c["results"])
    assert not any(_purged(worker_sessions, cases["delivered"]["series_id"]))  # nothing done
    report = run_retention(app, "test", now=LATER)
    assert (dry.spool.files, dry.spool.bytes) == (report.spool.files, report.spool.bytes) == \
        (2, 2000)
    assert (report.results.items, report.results.files) == (2, 4)  # delivered + recent results
    gone = [p for c in cases.values() for p in c["spool"] + c["results"] if not p.exists()]
    expected = cases["delivered"]["spool"] + cases["delivered"]["results"] + \
        cases["recent"]["results"]  # results are kept 30 days after they were made
    assert sorted(gone) == sorted(expected)
    assert _purged(worker_sessions, cases["delivered"]["series_id"]) == [True, True]
    for name in ("queued", "failed", "dead delivery", "pending delivery", "assembling",
                 "recent"):
        assert not any(_purged(worker_sessions, cases[name]["series_id"])), name
    assert memories.exists()  # reference data are never purged by retention
    with worker_sessions() as s:  # the rows stay, marked
        assert s.get(Result, cases["delivered"]["result_id"]).purged_at is not None
        assert s.get(Result, cases["dead delivery"]["result_id"]).purged_at is None
    again = run_retention(app, "test", now=LATER)
    assert (again.spool.items, again.results.items) == (0, 0)
    # the study is sent again after it was purged: the file is back and retention owns it
    path = cases["delivered"]["spool"][0]
    path.write_bytes(b"y" * 10)
    with worker_sessions.begin() as s:
        row = s.execute(sa.select(Instance).where(Instance.spool_path == str(path))).scalar_one()
        record_instance(s, InstanceRecord(
            study_instance_uid="2.25.1", series_instance_uid="x", sop_instance_uid=
            row.sop_instance_uid, sop_class_uid=MR, spool_path=str(path), size_bytes=10))
    assert sorted(_purged(worker_sessions, cases["delivered"]["series_id"])) == [False, True]
    assert run_retention(app, "test", now=LATER).spool.items == 1 and not path.exists()


def test_a_pass_interrupted_midway_is_completed_by_the_next(world, worker_sessions):
    app, cases, _ = world
    delivered = cases["delivered"]
    delivered["spool"][0].unlink()  # a pass deleted this file, then died before marking it
    report = run_retention(app, "test", now=LATER)
    assert report.spool.items == 2 and report.spool.bytes == 1000  # one was already gone
    assert _purged(worker_sessions, delivered["series_id"]) == [True, True]
    assert not any(p.exists() for p in delivered["spool"])
    assert run_retention(app, "test", now=LATER).spool.items == 0


def test_cli_dry_run_reports_json(worker_db_url, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from rafss_core.cli import app

    monkeypatch.setenv("RAFSS_DATABASE_URL", worker_db_url)
    result = CliRunner().invoke(app, ["retention", "run", "--dry-run", "--json",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and set(report) == {"dry_run", "spool", "results"}
