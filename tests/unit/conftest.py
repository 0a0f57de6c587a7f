from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def acdc_root() -> Path:
    """The ACDC dataset in ../shared/data/acdc (read in place, never copied into the repo)."""
    root = Path(os.environ.get("RAFSS_ACDC", REPO.parent / "shared" / "data" / "acdc"))
    if not (root / "dataset.json").exists():
        pytest.fail(f"ACDC data not found at {root}; set RAFSS_ACDC to the dataset folder")
    return root
