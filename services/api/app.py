"""The HTTP API and the curation web UI.

``/health`` and ``/metrics`` (Prometheus) are open; every other route needs a bearer token
(see :mod:`services.api.auth`). OpenAPI docs: ``/docs``. The web UI lives under ``/ui``.
Use-case errors map to HTTP: LookupError 404, InvalidTransitionError and ConflictError 409,
ValueError 422. Every route declares each status it can answer with (:mod:`services.api.errors`);
text that Postgres cannot store is refused with 422 before any route runs; a body above
``RAFSS_MAX_UPLOAD_MB`` gets 413.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel

from rafss_core.app import App
from rafss_core.app.errors import ConflictError, InvalidTransitionError
from services.api.errors import reject_unstorable_text

log = logging.getLogger(__name__)


def _error(status_code: int) -> Any:
    def handler(request: Request, exc: Exception) -> JSONResponse:
        # the message names the object and what to do; request values are never logged (PHI)
        log.info("%s %s -> %d (%s)", request.method, request.url.path, status_code,
                 type(exc).__name__)
        detail = str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc)
        return JSONResponse({"detail": detail}, status_code=status_code)

    return handler


class DiskOut(BaseModel):
    free_bytes: int
    min_free_bytes: int
    watermark_active: bool


class HealthOut(BaseModel):
    status: str
    database: str
    disk: DiskOut | None = None


def create_app(rafss: App) -> FastAPI:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry

    from services.api import ui
    from services.api.metrics import DatabaseCollector, DiskCollector
    from services.api.routers import audit, jobs, peers, references, tasks

    app = FastAPI(title="RAFSS", version="0.1.0",
                  description="Retrieval-augmented few-shot segmentation: curation and jobs. "
                              "Authenticate with `Authorization: Bearer <token>` "
                              "(`rafss tokens create --role ROLE`).",
                  dependencies=[Depends(reject_unstorable_text)],
                  max_body_size=rafss.settings.max_upload_mb * 1024 * 1024)
    app.state.rafss = rafss
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(rafss.sessions))
    disk = DiskCollector(rafss.sessions, rafss.settings.spool_dir,
                         rafss.settings.min_free_disk_mb)
    registry.register(disk)
    app.add_exception_handler(LookupError, _error(404))
    app.add_exception_handler(InvalidTransitionError, _error(409))
    app.add_exception_handler(ConflictError, _error(409))
    app.add_exception_handler(ValueError, _error(422))
    for module in (tasks, peers, references, jobs, audit, ui):
        app.include_router(module.router)

    @app.get("/health", tags=["service"], response_model=HealthOut,
             responses={503: {"model": HealthOut, "description": "The database is unavailable."}})
    def health() -> JSONResponse:
        from rafss_core.store.admin import ping

        try:
            ping(rafss.sessions)
        except Exception as exc:
            log.warning("health: database unavailable (%s)", type(exc).__name__)
            return JSONResponse({"status": "degraded", "database": "unavailable"},
                                status_code=503)
        state = disk.watermark.check()
        body = {"status": "degraded" if state.low else "ok", "database": "ok",
                "disk": {"free_bytes": state.free_bytes, "min_free_bytes": state.min_free_bytes,
                         "watermark_active": state.low}}
        return JSONResponse(body)

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
                              "description": "Prometheus text exposition format."}})
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app
