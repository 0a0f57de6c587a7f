"""The API on a real database (TestClient drives the ASGI app in-process; nothing is mocked)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Api:
    client: object
    app: object  # rafss_core.app.App
    tokens: dict[str, str]
    task: str

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def api(db_session_factory, tmp_path_factory) -> Api:
    return build_api(db_session_factory, tmp_path_factory.mktemp("api-data"))


def build_api(db_session_factory, data_dir: Path) -> Api:
    """The app on these sessions, a token per role, and one cardiac task."""
    from fastapi.testclient import TestClient

    from rafss_core.app import App
    from rafss_core.app.tasks import create_task
    from rafss_core.app.tokens import create_token
    from rafss_core.config import Settings
    from services.api.app import create_app

    app = App(db_session_factory, Settings(data_dir=data_dir, models="tiny-random",
                                           backend="sam2-memory"))
    tokens = {role: create_token(app, "test", role=role,
                                 name=f"{role}-{uuid.uuid4().hex[:6]}")[1]
              for role in ("admin", "reviewer", "viewer")}
    task = f"cardiac-{uuid.uuid4().hex[:6]}"
    create_task(app, "test", name=task, modality="MR", labels=["1:RV", "2:MYO", "3:LV"], k=2)
    return Api(TestClient(create_app(app)), app, tokens, task)
