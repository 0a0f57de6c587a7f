"""Fixtures for the DICOM file-layer tests: a real ACDC-built MR series, written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import acdc_case, volume_to_mr_series
from tests.unit.dicom.helpers import CASE, AcdcSeries


@pytest.fixture(scope="session")
def acdc_series(tmp_path_factory: pytest.TempPathFactory, acdc_root: Path) -> AcdcSeries:
    """The ACDC case written as a single-frame MR series (uncompressed, one file per slice)."""
    volume, labels = acdc_case(CASE)
    out = tmp_path_factory.mktemp("acdc_mr")
    paths = volume_to_mr_series(volume, out, seed="dicom-unit")
    return AcdcSeries(volume, labels, paths)
