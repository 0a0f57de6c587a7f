"""Imports through the API: DICOM series + SEG by upload, and a study + SEG the SCP received;
the web UI's cookie session refuses a write without its CSRF token."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.factories import acdc_case, volume_to_mr_series


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory, api):
    """An ACDC volume as an MR series and a SEG of its expert labels (the task's segments)."""
    from rafss_core.dicom.labels import task_segments
    from rafss_core.dicom.seg import AlgorithmInfo, write_seg
    from rafss_core.dicom.series import load_series
    from rafss_core.store.repositories.tasks import task_by_name

    out: Path = tmp_path_factory.mktemp("dicom-case")
    volume, labels = acdc_case("patient002_frame01")
    files = volume_to_mr_series(volume, out / "series", seed=uuid.uuid4().hex)
    with api.app.sessions() as s:
        segments = task_segments(list(task_by_name(s, api.task).labels))
    seg = write_seg(labels, load_series(files), segments, AlgorithmInfo(["expert"], "0"),
                    f"expert-{uuid.uuid4().hex}")
    seg.save_as(out / "seg.dcm")
    return files, out / "seg.dcm"


def _upload(api, files):
    return api.client.post(f"/api/tasks/{api.task}/references/upload",
                           headers=api.headers("admin"), files=files)


def test_dicom_upload(api, dicom_case):
    files, seg = dicom_case
    series = [("series", (p.name, p.read_bytes())) for p in files]
    r = _upload(api, [*series, ("seg", ("seg.dcm", seg.read_bytes()))])
    assert r.status_code == 202, r.text
    assert r.json()["slices"] == len(files)
    # a SEG that annotates another series is refused, and nothing is staged
    staged = set(api.app.settings.uploads_dir.iterdir())
    r = _upload(api, [*series[:-2], ("seg", ("seg.dcm", seg.read_bytes()))])
    assert r.status_code == 422 and "does not fit" in r.json()["detail"]
    assert set(api.app.settings.uploads_dir.iterdir()) == staged


def test_dicom_upload_with_a_nul_in_a_uid_is_422(api, dicom_case, tmp_path):
    import pydicom
    from pydicom.dataelem import DataElement

    files, seg = dicom_case
    series = []
    for p in files:
        ds = pydicom.dcmread(p)
        ds["StudyInstanceUID"] = DataElement(0x0020000D, "UI", b"1.2.826.0\x001.99")
        series.append(("series", (p.name, _encoded(ds))))
    uploads = api.app.settings.uploads_dir
    staged = set(uploads.iterdir()) if uploads.exists() else set()
    r = _upload(api, [*series, ("seg", ("seg.dcm", seg.read_bytes()))])
    assert r.status_code == 422 and "StudyInstanceUID" in r.json()["detail"], r.text
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == staged


def _encoded(ds) -> bytes:
    import io

    import pydicom

    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=False)
    return out.getvalue()


def test_import_from_received(api, dicom_case, db_session_factory, tmp_path):
    from rafss_core.store.repositories.sources import add_allowed_source
    from services.scp import ScpConfig, StorageSCP

    files, seg = dicom_case
    with db_session_factory.begin() as s:
        add_allowed_source(s, "IMPORTER")
    scp = StorageSCP(ScpConfig(spool_dir=tmp_path / "spool", port=0), db_session_factory)
    scp.start()
    try:
        done = subprocess.run(["storescu", "-R", "-aet", "IMPORTER", "-aec", "RAFSS",
                               "127.0.0.1", str(scp.port), *map(str, files), str(seg)],
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        scp.stop()
    import pydicom

    series_uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    seg_uid = pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID
    h = api.headers("admin")
    url = f"/api/tasks/{api.task}/references/from-received"
    r = api.client.post(url, headers=h, json={"series_instance_uid": series_uid,
                                              "seg_sop_instance_uid": seg_uid})
    assert r.status_code == 202, r.text
    job = api.client.get(f"/api/jobs/{r.json()['job_id']}", headers=h).json()
    assert job["payload"]["source"] == "received" and job["kind"] == "embed_references"
    r = api.client.post(url, headers=h, json={"series_instance_uid": "1.2.3.999",
                                              "seg_sop_instance_uid": seg_uid})
    assert r.status_code == 404 and "no received series" in r.json()["detail"]


def test_ui_session_writes_need_the_csrf_token(api):
    from fastapi.testclient import TestClient

    from services.api.auth import csrf_token

    client = TestClient(api.client.app)
    token = api.tokens["reviewer"]
    r = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303 and "rafss_session" in r.cookies
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=strict" in r.headers["set-cookie"]
    page = client.get("/ui/")
    assert page.status_code == 200 and api.task in page.text
    r = client.post("/ui/candidates/999999/approve", data={}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = client.post("/ui/candidates/999999/approve", data={"csrf_token": "0" * 64},
                    follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/ui/candidates/999999/approve", data={"csrf_token": csrf_token(token)},
                    follow_redirects=False)
    assert r.status_code == 404  # past the CSRF and role checks: no such candidate
    viewer = TestClient(api.client.app)
    viewer.post("/ui/login", data={"token": api.tokens["viewer"]})
    r = viewer.post("/ui/candidates/999999/approve",
                    data={"csrf_token": csrf_token(api.tokens["viewer"])})
    assert r.status_code == 403 and "reviewer" in r.json()["detail"]
    assert TestClient(api.client.app).get("/ui/", follow_redirects=False).headers[
        "location"] == "/ui/login"
