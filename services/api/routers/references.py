"""References: reference-set versions, candidate batches, slices and imports.

Every role reads; reviewers (and admins) approve, reject and revoke; admins import. Imports
are checked here and run by a worker (the API never embeds)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Response, UploadFile, status
from pydantic import BaseModel

from rafss_core.app import App
from rafss_core.app import imports as imp
from rafss_core.app import references as uc
from rafss_core.app.views import TokenView
from services.api.auth import RBAC, actor, get_app
from services.api.errors import WRITE, Offset, RowId, RowIdFilter, errors

router = APIRouter(tags=["references"])


class Decision(BaseModel):
    reason: str | None = None


class ReceivedIn(BaseModel):
    series_instance_uid: str
    seg_sop_instance_uid: str


@router.get("/api/tasks/{task}/reference-sets", responses=errors(401, 404, 422))
def reference_sets(task: str, app: App = Depends(get_app),
                   _: TokenView = Depends(RBAC("viewer"))) -> list[dict[str, Any]]:
    return [r.as_dict() for r in uc.list_reference_sets(app, task)]


@router.get("/api/tasks/{task}/slices", responses=errors(401, 404, 422))
def slices(task: str, state: str | None = None, candidate_id: RowIdFilter = None,
           limit: int = Query(200, ge=1, le=2000), offset: Offset = 0,
           app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
           ) -> list[dict[str, Any]]:
    return [s.as_dict() for s in uc.list_slices(app, task, state=state,
                                                candidate_id=candidate_id, limit=limit,
                                                offset=offset)]


@router.get("/api/slices/{slice_id}/thumbnail.png", response_class=Response,
            responses={200: {"content": {"image/png": {}},
                             "description": "The slice with its mask overlaid."},
                       **errors(401, 404, 422)})
def thumbnail(slice_id: RowId, size: int = Query(160, ge=32, le=512),
              app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))) -> Response:
    return Response(uc.slice_thumbnail(app, slice_id, size), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=300"})


@router.post("/api/slices/{slice_id}/revoke", responses=errors(*WRITE, 404, 409))
def revoke_slice(slice_id: RowId, body: Decision | None = None, app: App = Depends(get_app),
                 who: TokenView = Depends(RBAC("reviewer"))) -> dict[str, Any]:
    return uc.revoke_slice(app, actor(who), slice_id, body.reason if body else None).as_dict()


@router.get("/api/candidates", responses=errors(401, 404, 422))
def candidates(task: str | None = None, state: str | None = None, app: App = Depends(get_app),
               _: TokenView = Depends(RBAC("viewer"))) -> list[dict[str, Any]]:
    return [c.as_dict() for c in uc.list_candidates(app, task, state)]


@router.get("/api/candidates/{candidate_id}", responses=errors(401, 404, 422))
def candidate(candidate_id: RowId, app: App = Depends(get_app),
              _: TokenView = Depends(RBAC("viewer"))) -> dict[str, Any]:
    return uc.get_candidate(app, candidate_id).as_dict()


@router.post("/api/candidates/{candidate_id}/approve",
             responses=errors(401, 403, 404, 409, 422))
def approve(candidate_id: RowId, app: App = Depends(get_app),
            who: TokenView = Depends(RBAC("reviewer"))) -> dict[str, Any]:
    return uc.approve_candidate(app, actor(who), candidate_id).as_dict()


@router.post("/api/candidates/{candidate_id}/reject", responses=errors(*WRITE, 404, 409))
def reject(candidate_id: RowId, body: Decision | None = None, app: App = Depends(get_app),
           who: TokenView = Depends(RBAC("reviewer"))) -> dict[str, Any]:
    return uc.reject_candidate(app, actor(who), candidate_id,
                               body.reason if body else None).as_dict()


def disk_room(app: App = Depends(get_app)) -> None:
    """Refuse an upload with 507 while free disk is below the watermark (nothing is staged)."""
    from services.disk import DiskWatermark

    if DiskWatermark(app.settings.uploads_dir, app.settings.min_free_disk_mb).check().low:
        raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE,
                            "free disk space is below RAFSS_MIN_FREE_DISK_MB: free space "
                            "(`rafss retention run`) and upload again")


async def _read(upload: UploadFile) -> tuple[str, bytes]:
    return upload.filename or "upload", await upload.read()


async def stage_upload(app: App, who: str, task: str, image: UploadFile | None,
                       label: UploadFile | None, series: list[UploadFile] | None,
                       seg: UploadFile | None) -> imp.ImportRequest:
    """Shared by the API and the UI: NIfTI image + label, or DICOM series files + SEG."""
    from starlette.concurrency import run_in_threadpool

    if image is not None and label is not None and not series and seg is None:
        return await run_in_threadpool(imp.stage_nifti_upload, app, who, task,
                                       await _read(image), await _read(label))
    if series and seg is not None and image is None and label is None:
        files = [await _read(f) for f in series]
        return await run_in_threadpool(imp.stage_dicom_upload, app, who, task, files,
                                       await _read(seg))
    raise ValueError("upload either 'image' and 'label' (NIfTI) or 'series' files and 'seg' "
                     "(DICOM + DICOM-SEG)")


@router.post("/api/tasks/{task}/references/upload", status_code=status.HTTP_202_ACCEPTED,
             responses=errors(*WRITE, 404, 507), dependencies=[Depends(disk_room)])
async def upload(task: str, image: UploadFile | None = File(None),
                 label: UploadFile | None = File(None),
                 series: list[UploadFile] | None = File(None),
                 seg: UploadFile | None = File(None), app: App = Depends(get_app),
                 who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    """Import an annotated volume; a worker embeds it into a pending candidate batch."""
    return (await stage_upload(app, actor(who), task, image, label, series, seg)).as_dict()


@router.post("/api/tasks/{task}/references/from-received",
             status_code=status.HTTP_202_ACCEPTED, responses=errors(*WRITE, 404))
def from_received(task: str, body: ReceivedIn, app: App = Depends(get_app),
                  who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    """Import a series and a SEG the SCP already received."""
    return imp.import_received(app, actor(who), task, body.series_instance_uid,
                               body.seg_sop_instance_uid).as_dict()
