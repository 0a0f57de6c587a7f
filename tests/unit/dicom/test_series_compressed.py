"""Compressed copies made by real encoders (dcmtk; openjpeg via pydicom) decode to the same pixels.

Decoders are the non-GPL pydicom plugins: pydicom's RLE, python-gdcm (JPEG lossless), pyjpegls
(JPEG-LS), Pillow / pylibjpeg-openjpeg (JPEG 2000) and Pillow (JPEG baseline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from rafss_core.dicom import SeriesError, load_series
from tests.unit.dicom.helpers import AcdcSeries, rewrite, run_tool

pytestmark = pytest.mark.data

JPEG_LOSSLESS_PROCESS14 = UID("1.2.840.10008.1.2.4.57")


def _dcmtk_copy(paths: list[Path], out_dir: Path, *command: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = out_dir / path.name
        run_tool(*command, path, target)
        out.append(target)
    return out


def _syntax(path: Path) -> UID:
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID


@pytest.mark.parametrize(
    ("command", "syntax"),
    [
        (("dcmcjpeg", "+e1"), JPEGLosslessSV1),
        (("dcmcjpeg", "+el"), JPEG_LOSSLESS_PROCESS14),
        (("dcmcrle",), RLELossless),
        (("dcmcjpls", "+el"), JPEGLSLossless),
    ],
    ids=["jpeg-lossless-sv1", "jpeg-lossless-p14", "rle", "jpeg-ls-lossless"],
)
def test_lossless_dcmtk_copies_decode_exactly(acdc_series: AcdcSeries, tmp_path: Path,
                                              command: tuple[str, ...], syntax: UID) -> None:
    paths = _dcmtk_copy(acdc_series.paths, tmp_path, *command)
    assert _syntax(paths[0]) == syntax
    loaded = load_series(paths)
    np.testing.assert_array_equal(loaded.volume.array, acdc_series.stored)
    np.testing.assert_allclose(loaded.volume.affine, acdc_series.volume.affine, atol=1e-4)


def test_jpeg_ls_near_lossless_within_its_bound(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    paths = _dcmtk_copy(acdc_series.paths, tmp_path, "dcmcjpls", "+en", "+md", "2")
    assert _syntax(paths[0]) == JPEGLSNearLossless
    loaded = load_series(paths)
    assert np.abs(loaded.volume.array - acdc_series.stored).max() <= 2


def test_jpeg2000_lossless_decodes_exactly(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    """Encoded with openjpeg (pylibjpeg-openjpeg) through pydicom's ``compress``."""

    def j2k(_: int, ds: Dataset) -> None:
        ds.compress(JPEG2000Lossless)

    paths = rewrite(acdc_series.paths, tmp_path, j2k)
    assert _syntax(paths[0]) == JPEG2000Lossless
    np.testing.assert_array_equal(load_series(paths).volume.array, acdc_series.stored)


def test_jpeg_baseline_lossy_is_close(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    """JPEG baseline is 8-bit: an 8-bit copy of the series, compressed lossy by dcmcjpeg."""
    eight_bit = np.round(acdc_series.volume.array * 255).astype(np.uint8)

    def to_8bit(z: int, ds: Dataset) -> None:
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = eight_bit[int(ds.InstanceNumber) - 1].tobytes()

    raw = rewrite(acdc_series.paths, tmp_path / "raw8", to_8bit)
    np.testing.assert_array_equal(load_series(raw).volume.array, eight_bit)
    paths = _dcmtk_copy(raw, tmp_path / "jpeg", "dcmcjpeg", "+eb", "+q", "95")
    assert _syntax(paths[0]) == JPEGBaseline8Bit
    loaded = load_series(paths)
    error = np.abs(loaded.volume.array - eight_bit.astype(np.float32))
    assert error.mean() < 1.5
    assert np.percentile(error, 99.9) <= 12
    assert not np.array_equal(loaded.volume.array, eight_bit)  # really lossy, really decoded


def test_undecodable_syntax_gives_a_clear_error(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    """A syntax without a decoder (MPEG-2 video) names the syntax and what to do."""

    def mpeg(_: int, ds: Dataset) -> None:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")

    paths = rewrite(acdc_series.paths[:2], tmp_path, mpeg)
    with pytest.raises(SeriesError, match=r"cannot decode transfer syntax 1\.2\.840\.10008\.1\.2"
                                          r"\.4\.100.*Install a pydicom pixel plugin"):
        load_series(paths)
