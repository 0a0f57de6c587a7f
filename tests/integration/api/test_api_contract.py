"""The API contract on the real app and Postgres: text Postgres cannot store is refused with 422
naming the field and writes nothing, every status a route answers with is declared, bodies
over the limit get 413 and uploads on a full disk 507."""

from __future__ import annotations

import uuid

import pytest


def _fields(response) -> list[list]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def _audit_rows(api) -> int:
    return len(api.client.get("/api/audit", headers=api.headers("admin"),
                              params={"limit": 1000}).json())


@pytest.mark.parametrize("text", ["a\x00b", "\x00"])
def test_nul_in_a_query_parameter_is_422(api, text):
    r = api.client.get("/api/audit", headers=api.headers("reviewer"), params={"actor": text})
    assert _fields(r) == [["query", "actor"]]
    assert "NUL" in r.json()["detail"][0]["msg"]
    r = api.client.get("/api/jobs", headers=api.headers("viewer"), params={"task": text})
    assert _fields(r) == [["query", "task"]]


def test_nul_in_a_path_parameter_is_422(api):
    assert _fields(api.client.get("/api/tasks/a%00b", headers=api.headers("viewer"))) == [
        ["path", "name"]]


def test_nul_and_surrogates_in_json_bodies_are_422_and_write_nothing(api):
    before = _audit_rows(api)
    name = f"t-{uuid.uuid4().hex[:6]}"
    r = api.client.post("/api/tasks", headers={**api.headers("admin"),
                                               "content-type": "application/json"},
                        content=f'{{"name": "{name}", "modality": "MR", '
                                f'"labels": ["1:RV", "2:M\\u0000YO"]}}')
    assert _fields(r) == [["body", "labels", 1]]
    r = api.client.post("/api/tasks", headers={**api.headers("admin"),
                                               "content-type": "application/json"},
                        content=f'{{"name": "{name}\\ud800", "modality": "MR", '
                                f'"labels": ["1:RV"]}}')
    assert _fields(r) == [["body", "name"]]
    assert "surrogate" in r.json()["detail"][0]["msg"]
    r = api.client.post("/api/sources", headers=api.headers("admin"),
                        json={"ae_title": "MOD\x00ALITY"})
    assert _fields(r) == [["body", "ae_title"]]
    r = api.client.post(f"/api/slices/{2**40}/revoke", headers=api.headers("reviewer"),
                        json={"reason": "bad\x00"})
    assert _fields(r) == [["body", "reason"]]
    assert api.client.get(f"/api/tasks/{name}", headers=api.headers("viewer")).status_code == 404
    assert _audit_rows(api) == before


def test_nul_in_upload_fields_is_422_and_stages_nothing(api):
    staged = api.app.settings.uploads_dir
    before = sorted(staged.iterdir()) if staged.exists() else []
    # raw multipart: a client library would escape the NUL in the file name
    body = (b'--B\r\nContent-Disposition: form-data; name="image"; filename="a\x00.nii.gz"\r\n'
            b'\r\nx\r\n--B\r\nContent-Disposition: form-data; name="label"; '
            b'filename="b.nii.gz"\r\n\r\ny\r\n--B--\r\n')
    r = api.client.post(f"/api/tasks/{api.task}/references/upload", content=body,
                        headers={**api.headers("admin"),
                                 "content-type": "multipart/form-data; boundary=B"})
    assert _fields(r) == [["body", "image"]]
    assert (sorted(staged.iterdir()) if staged.exists() else []) == before


def test_ids_beyond_bigint_are_422_not_500(api):
    for path in (f"/api/jobs/{2**63}", f"/api/candidates/{2**63}",
                 f"/api/slices/{2**64}/thumbnail.png"):
        r = api.client.get(path, headers=api.headers("viewer"))
        assert r.status_code == 422, (path, r.text)
    assert api.client.get(f"/api/jobs/{2**63 - 1}",
                          headers=api.headers("viewer")).status_code == 404


def test_duplicate_task_is_409(api):
    body = {"name": api.task, "modality": "MR", "labels": ["1:RV"]}
    r = api.client.post("/api/tasks", headers=api.headers("admin"), json=body)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_every_status_is_declared(api):
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    def declared(method: str, path: str) -> set[str]:
        return set(spec["paths"][path][method]["responses"])

    assert declared("get", "/api/candidates/{candidate_id}") == {"200", "401", "404", "422"}
    assert declared("post", "/api/tasks") == {"201", "400", "401", "403", "409", "413", "422"}
    assert {"404", "507"} <= declared("post", "/api/tasks/{task}/references/upload")
    assert declared("get", "/health") == {"200", "503"}
    thumbnail = spec["paths"]["/api/slices/{slice_id}/thumbnail.png"]["get"]["responses"]
    assert set(thumbnail["200"]["content"]) == {"image/png"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/"):
                assert operation["security"] == [{"HTTPBearer": []}], (method, path)
                assert {"401", "422"} <= set(operation["responses"]), (method, path)
            if method == "post" and "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, path)


def _client(api, **settings):
    from fastapi.testclient import TestClient

    from rafss_core.app import App
    from services.api.app import create_app

    app = App(api.app.sessions, api.app.settings.model_copy(update=settings))
    return TestClient(create_app(app))


def test_a_body_over_the_limit_is_413(api):
    client = _client(api, max_upload_mb=1)
    r = client.post(f"/api/tasks/{api.task}/references/upload", headers=api.headers("admin"),
                    files={"image": ("a.nii.gz", b"\x01" * (2 * 1024 * 1024)),
                           "label": ("b.nii.gz", b"y")})
    assert r.status_code == 413, r.text


def test_an_upload_on_a_full_disk_is_507_and_stages_nothing(api):
    client = _client(api, min_free_disk_mb=2**40)
    staged = api.app.settings.uploads_dir
    before = sorted(staged.iterdir()) if staged.exists() else []
    r = client.post(f"/api/tasks/{api.task}/references/upload", headers=api.headers("admin"),
                    files={"image": ("a.nii.gz", b"x"), "label": ("b.nii.gz", b"y")})
    assert r.status_code == 507 and "RAFSS_MIN_FREE_DISK_MB" in r.json()["detail"]
    assert (sorted(staged.iterdir()) if staged.exists() else []) == before
