"""The HTTP API: ``/health`` and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def create_app(sessions: sessionmaker[Session]) -> FastAPI:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry

    from services.api.metrics import DatabaseCollector

    app = FastAPI(title="RAFSS", version="0.1.0")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(sessions))

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            with sessions() as s:
                s.execute(sa.text("SELECT 1"))
        except Exception as exc:
            log.warning("health: database unavailable (%s)", type(exc).__name__)
            return JSONResponse({"status": "degraded", "database": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
