"""Jobs: every role lists and reads them; admins re-run them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from rafss_core.app import App
from rafss_core.app import jobs as uc
from rafss_core.app.views import TokenView
from services.api.auth import RBAC, actor, get_app
from services.api.errors import Offset, RowId, errors

router = APIRouter(tags=["jobs"])


@router.get("/api/jobs", responses=errors(401, 422))
def list_jobs(state: str | None = None, task: str | None = None, kind: str | None = None,
              limit: int = Query(50, ge=1, le=1000), offset: Offset = 0,
              app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
              ) -> list[dict[str, Any]]:
    return [uc.row_dict(j) for j in uc.list_jobs(app, state=state, task=task, kind=kind,
                                                 limit=limit, offset=offset)]


@router.get("/api/jobs/{job_id}", responses=errors(401, 404, 422))
def get_job(job_id: RowId, app: App = Depends(get_app),
            _: TokenView = Depends(RBAC("viewer"))) -> dict[str, Any]:
    return uc.row_dict(uc.get_job(app, job_id))


@router.post("/api/jobs/{job_id}/rerun", responses=errors(401, 403, 404, 409, 422))
def rerun_job(job_id: RowId, app: App = Depends(get_app),
              who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    return uc.row_dict(uc.rerun_job(app, actor(who), job_id))
