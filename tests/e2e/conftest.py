from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Rafss, StoreSCP
from tests.factories import acdc_case, volume_to_mr_series

PATIENT_NAME = "DOE^JANE^PHITEST"
PATIENT_ID = "PHI-77341"


@pytest.fixture
def series_files(tmp_path: Path) -> list[Path]:
    """ACDC test patient001 (ED frame) as a DICOM MR series with a known name and ID."""
    volume, _ = acdc_case("patient001_frame01")
    return volume_to_mr_series(volume, tmp_path / "series", patient_name=PATIENT_NAME,
                               patient_id=PATIENT_ID, seed=str(tmp_path))


@pytest.fixture
def pacs(tmp_path: Path):
    scp = StoreSCP(tmp_path / "pacs").start()
    yield scp
    scp.stop()


@pytest.fixture
def make_rafss(tmp_path: Path):
    started: list[Rafss] = []

    def make(**kwargs) -> Rafss:
        r = Rafss(tmp_path / "rafss-data", **kwargs)
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()
