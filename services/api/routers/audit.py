"""The audit log: reviewers and admins read it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from rafss_core.app import App
from rafss_core.app.audit_log import list_audit
from rafss_core.app.views import TokenView
from services.api.auth import RBAC, get_app
from services.api.errors import Offset, errors

router = APIRouter(tags=["audit"])


@router.get("/api/audit", responses=errors(401, 403, 422))
def audit(actor: str | None = None, action: str | None = None, object_type: str | None = None,
          object_id: str | None = None, limit: int = Query(100, ge=1, le=1000),
          offset: Offset = 0, app: App = Depends(get_app),
          _: TokenView = Depends(RBAC("reviewer"))) -> list[dict[str, Any]]:
    return [e.as_dict() for e in list_audit(app, actor=actor, action=action,
                                            object_type=object_type, object_id=object_id,
                                            limit=limit, offset=offset)]
