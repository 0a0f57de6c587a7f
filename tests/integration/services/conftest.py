from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import acdc_case, volume_to_mr_series

ALLOWED_AES = ("STORESCU", "ECHOSCU", "RAFSS-TEST")


@pytest.fixture(scope="session")
def allowed_callers(db_session_factory) -> tuple[str, ...]:
    """The AE titles the test SCPs admit (rows in ``allowed_sources``)."""
    from rafss_core.store.repositories.sources import add_allowed_source

    with db_session_factory.begin() as session:
        for ae in ALLOWED_AES:
            add_allowed_source(session, ae, description="integration tests")
    return ALLOWED_AES


@pytest.fixture(scope="session")
def acdc_volume():
    volume, labels = acdc_case("patient001_frame01")
    return volume, labels


@pytest.fixture
def make_series(tmp_path: Path, acdc_volume) -> Callable[..., list[Path]]:
    """Write the ACDC case as an MR series with fresh UIDs (each call: a new series)."""
    volume, _ = acdc_volume

    def make(name: str = "series", **kwargs: object) -> list[Path]:
        seed = f"{name}-{uuid.uuid4().hex}"
        return volume_to_mr_series(volume, tmp_path / name, seed=seed, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def scp_factory(db_session_factory, allowed_callers, tmp_path: Path):
    """Start Storage SCPs on free ports (stopped after the test)."""
    from services.scp import ScpConfig, StorageSCP

    started: list[StorageSCP] = []

    def start(session_factory=None, **overrides: object) -> StorageSCP:
        values: dict[str, object] = {
            "spool_dir": tmp_path / "spool",
            "quarantine_dir": tmp_path / "quarantine",
            "port": 0,
            "ae_title": "RAFSS",
        }
        values.update(overrides)
        scp = StorageSCP(ScpConfig(**values), session_factory or db_session_factory)  # type: ignore[arg-type]
        scp.start()
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


@pytest.fixture
def scp(scp_factory):
    return scp_factory()


def instance_rows(session_factory, uids: list[str]) -> dict[str, tuple[str, str]]:
    """``{sop_instance_uid: (state, spool_path)}`` for the recorded ones among ``uids``."""
    from rafss_core.store.models import Instance

    with session_factory() as session:
        rows = session.execute(
            sa.select(Instance.sop_instance_uid, Instance.state, Instance.spool_path).where(
                Instance.sop_instance_uid.in_(uids)
            )
        ).all()
    return {uid: (str(state), path) for uid, state, path in rows}


def count_rows(session_factory, uid: str) -> int:
    from rafss_core.store.models import Instance

    with session_factory() as session:
        return int(
            session.execute(
                sa.select(sa.func.count()).where(Instance.sop_instance_uid == uid)
            ).scalar_one()
        )


@pytest.fixture
def rows() -> Iterator[Callable]:
    yield instance_rows
