"""Access control and bad input on the real API: 401, 403, injection-like strings, 422."""

from __future__ import annotations

import gzip
import uuid

import nibabel as nib
import numpy as np
import pytest

from tests.factories import ACDC


def test_health_and_metrics_are_open(api):
    health = api.client.get("/health").json()
    assert health["database"] == "ok" and health["disk"]["free_bytes"] > 0
    assert health["status"] == ("degraded" if health["disk"]["watermark_active"] else "ok")
    assert "rafss_jobs" in api.client.get("/metrics").text


def test_openapi_documents_every_resource(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in ("/api/tasks", "/api/routes", "/api/sources", "/api/destinations",
                 "/api/candidates", "/api/candidates/{candidate_id}/approve",
                 "/api/tasks/{task}/references/upload", "/api/jobs", "/api/jobs/{job_id}/rerun",
                 "/api/audit"):
        assert path in paths, path
    assert api.client.get("/docs").status_code == 200


@pytest.mark.parametrize("path", ["/api/tasks", "/api/jobs", "/api/candidates", "/api/audit"])
def test_no_token_is_401(api, path):
    r = api.client.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert api.client.get(path, headers={"Authorization": "Bearer rafss_nope"}).status_code == 401


def test_roles(api):
    assert api.client.get("/api/tasks", headers=api.headers("viewer")).status_code == 200
    # a viewer may not approve, create or read the audit log; a reviewer may not create tasks
    r = api.client.post("/api/candidates/1/approve", headers=api.headers("viewer"))
    assert r.status_code == 403 and "reviewer" in r.json()["detail"]
    assert api.client.post("/api/tasks", headers=api.headers("reviewer"), json={
        "name": "x", "modality": "MR", "labels": ["1:A"]}).status_code == 403
    assert api.client.get("/api/audit", headers=api.headers("viewer")).status_code == 403
    assert api.client.get("/api/audit", headers=api.headers("reviewer")).status_code == 200


def test_revoked_token_is_401(api):
    from rafss_core.app.tokens import create_token, revoke_token

    view, token = create_token(api.app, "test", role="admin", name=f"tmp-{uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/tasks", headers=headers).status_code == 200
    revoke_token(api.app, "test", view.id)
    assert api.client.get("/api/tasks", headers=headers).status_code == 401


def test_admin_writes_are_audited_with_the_actor(api):
    h = api.headers("admin")
    r = api.client.post("/api/destinations", headers=h, json={
        "name": f"pacs-{uuid.uuid4().hex[:4]}", "address": "PACS@10.0.0.5:104"})
    assert r.status_code == 201, r.text
    r = api.client.post("/api/sources", headers=h, json={"ae_title": "MODALITY1"})
    assert r.status_code == 201
    r = api.client.post("/api/routes", headers=h, json={"task": api.task, "modality": "MR"})
    assert r.status_code == 201
    assert api.client.post("/api/routes", headers=h, json={"task": "no-such-task"}).status_code \
        == 404
    assert api.client.post("/api/routes", headers=h, json={
        "task": api.task, "series_description": "(unclosed"}).status_code == 422
    assert api.client.post("/api/destinations", headers=h, json={
        "name": "bad", "address": "not an address"}).status_code == 422
    r = api.client.post("/api/destinations", headers=h, json={
        "name": "web", "address": "https://user:secret@pacs.example/dicom-web",
        "protocol": "stow-rs"})
    assert r.status_code == 422 and "credentials" in r.json()["detail"]
    assert api.client.post("/api/destinations", headers=h, json={
        "name": f"web-{uuid.uuid4().hex[:4]}", "address": "https://pacs.example/dicom-web",
        "protocol": "stow-rs"}).json()["protocol"] == "stow-rs"
    actions = {(e["actor"], e["action"]) for e in api.client.get(
        "/api/audit", headers=api.headers("reviewer")).json()}
    admin = next(a for a, _ in actions if a.startswith("token:admin-"))
    assert {(admin, "destination.add"), (admin, "source.allow"), (admin, "route.add")} <= actions


INJECTIONS = ["x'; DROP TABLE jobs; --", "\" OR 1=1 --", "../../etc/passwd", "%' OR '%'='",
              "<script>alert(1)</script>"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_like_strings_do_no_harm(api, evil):
    h = api.headers("admin")
    assert api.client.get("/api/jobs", headers=h, params={"task": evil}).json() == []
    assert api.client.get("/api/jobs", headers=h, params={"state": evil}).status_code == 422
    assert api.client.get("/api/audit", headers=h, params={"actor": evil}).json() == []
    assert api.client.get(f"/api/tasks/{evil}", headers=h).status_code in (404, 405)
    assert api.client.post("/api/tasks", headers=h, json={
        "name": evil, "modality": "MR", "labels": ["1:A"]}).status_code == 422
    assert api.client.get("/api/candidates", headers=h, params={"state": evil}).status_code \
        == 422
    # everything still there
    assert api.client.get("/api/jobs", headers=h).status_code == 200
    assert any(t["name"] == api.task for t in api.client.get("/api/tasks", headers=h).json())


def _nifti(array: np.ndarray, zooms=(1.5, 1.5, 10.0)) -> bytes:
    img = nib.Nifti1Image(array, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    return gzip.compress(img.to_bytes())


def _upload(api, files, role="admin"):
    return api.client.post(f"/api/tasks/{api.task}/references/upload",
                           headers=api.headers(role), files=files)


def _staged(api) -> list:
    d = api.app.settings.uploads_dir
    return list(d.iterdir()) if d.exists() else []


def _embed_jobs(api) -> int:
    return len(api.client.get("/api/jobs", headers=api.headers("viewer"),
                              params={"kind": "embed_references", "task": api.task}).json())


def test_bad_uploads_are_422_and_store_nothing(api):
    image = (ACDC / "imagesTr" / "patient001_frame01_0000.nii.gz").read_bytes()
    label = (ACDC / "labelsTr" / "patient001_frame01.nii.gz").read_bytes()
    jobs_before, staged_before = _embed_jobs(api), len(_staged(api))
    shape = nib.load(str(ACDC / "imagesTr" / "patient001_frame01_0000.nii.gz")).shape
    cases = {
        "corrupt": ({"image": ("a.nii.gz", b"not a nifti at all"),
                     "label": ("b.nii.gz", label)}, "not a readable NIfTI"),
        "geometry": ({"image": ("a.nii.gz", image),
                      "label": ("b.nii.gz", _nifti(np.zeros((10, 10, 3), np.uint8)))},
                     "differ in geometry"),
        "label value": ({"image": ("a.nii.gz", image),
                         "label": ("b.nii.gz", _nifti(np.full(shape, 7, np.uint8)))},
                        "label values [7]"),
        "neither": ({"label": ("b.nii.gz", label)}, "upload either"),
    }
    for name, (files, message) in cases.items():
        r = _upload(api, files)
        assert r.status_code == 422, (name, r.text)
        assert message in r.json()["detail"], (name, r.json())
    assert _embed_jobs(api) == jobs_before and len(_staged(api)) == staged_before
    # only admins import
    assert _upload(api, cases["corrupt"][0], role="reviewer").status_code == 403


def test_good_upload_is_staged_as_a_job(api):
    image = (ACDC / "imagesTr" / "patient001_frame01_0000.nii.gz").read_bytes()
    label = (ACDC / "labelsTr" / "patient001_frame01.nii.gz").read_bytes()
    r = _upload(api, {"image": ("p1.nii.gz", image), "label": ("p1l.nii.gz", label)})
    assert r.status_code == 202, r.text
    body = r.json()
    job = api.client.get(f"/api/jobs/{body['job_id']}", headers=api.headers("viewer")).json()
    assert job["kind"] == "embed_references" and job["state"] == "queued"
    assert job["payload"]["source"] == "upload" and job["payload"]["format"] == "nifti"
    assert body["slices"] > 0
