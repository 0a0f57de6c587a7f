"""DICOM peers: allowed sources and destinations. Admins write, every role reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from rafss_core.app import App
from rafss_core.app import peers as uc
from rafss_core.app.views import TokenView
from services.api.auth import RBAC, actor, get_app
from services.api.errors import WRITE, errors

router = APIRouter(tags=["peers"])


class SourceIn(BaseModel):
    ae_title: str
    ip: str | None = Field(None, description="an address or network; none = any")
    quiet_seconds: int | None = None


class DestinationIn(BaseModel):
    name: str
    address: str = Field(examples=["PACS@10.0.0.5:104", "https://pacs.example/dicom-web"],
                         description="AET@HOST:PORT (c-store) or a DICOMweb URL (stow-rs)")
    protocol: str = Field("c-store", description="c-store or stow-rs")
    tls: bool = False
    tls_ca: str | None = None


@router.get("/api/sources", responses=errors(401, 422))
def list_sources(app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
                 ) -> list[dict[str, Any]]:
    return [s.as_dict() for s in uc.list_sources(app)]


@router.post("/api/sources", status_code=status.HTTP_201_CREATED, responses=errors(*WRITE))
def allow_source(body: SourceIn, app: App = Depends(get_app),
                 who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    return uc.allow_source(app, actor(who), **body.model_dump()).as_dict()


@router.get("/api/destinations", responses=errors(401, 422))
def list_destinations(app: App = Depends(get_app), _: TokenView = Depends(RBAC("viewer"))
                      ) -> list[dict[str, Any]]:
    return [d.as_dict() for d in uc.list_destinations(app)]


@router.post("/api/destinations", status_code=status.HTTP_201_CREATED,
             responses=errors(*WRITE))
def add_destination(body: DestinationIn, app: App = Depends(get_app),
                    who: TokenView = Depends(RBAC("admin"))) -> dict[str, Any]:
    return uc.add_destination(app, actor(who), **body.model_dump()).as_dict()
