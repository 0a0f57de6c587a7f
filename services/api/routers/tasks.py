"""Tasks and routing rules: admins write, every role reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from rafss_core.app import App
from rafss_core.app import tasks as uc
from rafss_core.app.views import TokenView
from services.api.auth import RBAC, actor, get_app
from services.api.errors import WRITE, errors

router = APIRouter(tags=["tasks"])


class TaskIn(BaseModel):
    name: str = Field(examples=["cardiac-cine"])
    modality: str = Field(examples=["MR"])
    labels: list[str] = Field(examples=[["1:RV", "2:MYO", "3:LV"]],
                              description="NUMBER:NAME or NUMBER:NAME:SCHEME:CODE")
    k: int | None = None
    backend: str | None = None
    models: str | None = None
    min_similarity: float = Field(0.0, description="slices whose best retrieval similarity "
                                  "is below this are flagged and left unsegmented")


class RouteIn(BaseModel):
    task: str
    modality: str | None = None
    body_part: str | None = None
    series_description: str | None = Field(None, description="a regex, searched")
    calling_ae: str | None = None


@router.get("/api/tasks", responses=errors(401, 422))
def list_tasks(app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
               ) -> list[dict[str, Any]]:
    return [t.as_dict() for t in uc.list_tasks(app)]


@router.get("/api/tasks/{name}", responses=errors(401, 404, 422))
def get_task(name: str, app: App = Depends(get_app),
             _: TokenView = Depends(RBAC("viewer"))) -> dict[str, Any]:
    return uc.get_task(app, name).as_dict()


@router.post("/api/tasks", status_code=status.HTTP_201_CREATED, responses=errors(*WRITE, 409))
def create_task(body: TaskIn, app: App = Depends(get_app),
                who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    return uc.create_task(app, actor(who), name=body.name, modality=body.modality,
                          labels=body.labels, k=body.k, backend=body.backend,
                          models=body.models, min_similarity=body.min_similarity).as_dict()


@router.get("/api/routes", responses=errors(401, 422))
def list_routes(app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
                ) -> list[dict[str, Any]]:
    return [r.as_dict() for r in uc.list_routes(app)]


@router.post("/api/routes", status_code=status.HTTP_201_CREATED, responses=errors(*WRITE, 404))
def add_route(body: RouteIn, app: App = Depends(get_app),
              who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    return uc.add_route(app, actor(who), **body.model_dump()).as_dict()
