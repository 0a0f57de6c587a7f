"""load_series on real ACDC-built MR files: geometry, values, order, and clear rejections."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from rafss_core.dicom import SeriesError, load_series
from tests.unit.dicom.helpers import AcdcSeries, rewrite

pytestmark = pytest.mark.data


def test_reproduces_nifti_geometry_and_values(acdc_series: AcdcSeries) -> None:
    loaded = load_series(acdc_series.paths)
    vol = loaded.volume
    assert vol.shape == acdc_series.volume.shape
    np.testing.assert_allclose(vol.affine, acdc_series.volume.affine, atol=1e-4)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, acdc_series.stored)
    assert vol.modality == "MR"
    # per-slice provenance, in z order, and headers without pixel data
    assert len(loaded.instances) == vol.num_slices
    for z, inst in enumerate(loaded.instances):
        np.testing.assert_allclose(
            [float(v) for v in inst.dataset.ImagePositionPatient], vol.slice_position(z)[:3],
            atol=1e-4,
        )
        assert inst.frame_number is None
        assert "PixelData" not in inst.dataset
    assert loaded.series_instance_uid == loaded.instances[0].dataset.SeriesInstanceUID
    assert loaded.study_instance_uid == loaded.instances[0].dataset.StudyInstanceUID
    assert len(set(loaded.sop_instance_uids)) == vol.num_slices


def test_file_order_does_not_matter(acdc_series: AcdcSeries) -> None:
    reference = load_series(acdc_series.paths)
    for seed in (1, 2):
        shuffled = list(acdc_series.paths)
        random.Random(seed).shuffle(shuffled)
        assert shuffled != acdc_series.paths
        loaded = load_series(shuffled)
        np.testing.assert_array_equal(loaded.volume.array, reference.volume.array)
        np.testing.assert_allclose(loaded.volume.affine, reference.volume.affine)
        assert loaded.sop_instance_uids == reference.sop_instance_uids


def test_reversed_normal_sorts_along_cross_product(acdc_series: AcdcSeries,
                                                   tmp_path: Path) -> None:
    """Instances numbered against the normal still stack along cross(row, col)."""

    def renumber(i: int, ds: Dataset) -> None:
        ds.InstanceNumber = len(acdc_series.paths) - i

    loaded = load_series(list(reversed(rewrite(acdc_series.paths, tmp_path, renumber))))
    direction = loaded.volume.direction
    np.testing.assert_allclose(direction[:, 2], np.cross(direction[:, 0], direction[:, 1]))
    np.testing.assert_array_equal(loaded.volume.array, acdc_series.stored)


def test_rescale_slope_and_intercept(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    def rescale(_: int, ds: Dataset) -> None:
        ds.RescaleSlope = 0.5
        ds.RescaleIntercept = -100
        ds.RescaleType = "US"

    loaded = load_series(rewrite(acdc_series.paths, tmp_path, rescale))
    np.testing.assert_allclose(loaded.volume.array, acdc_series.stored * 0.5 - 100)


def test_single_slice_uses_spacing_between_slices(acdc_series: AcdcSeries) -> None:
    loaded = load_series(acdc_series.paths[3:4])
    assert loaded.volume.shape == (1, *acdc_series.volume.shape[1:])
    assert loaded.volume.spacing == pytest.approx(acdc_series.volume.spacing)


def _edited(acdc_series: AcdcSeries, tmp_path: Path, index: int, edit) -> list[Path]:
    def one(i: int, ds: Dataset) -> None:
        if i == index:
            edit(ds)

    return rewrite(acdc_series.paths, tmp_path, one)


def _rotate_orientation(ds: Dataset) -> None:
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def _smaller(ds: Dataset) -> None:
    arr = ds.pixel_array[:-2]
    ds.Rows = arr.shape[0]
    ds.PixelData = arr.tobytes()


def _other_spacing(ds: Dataset) -> None:
    ds.PixelSpacing = [1.25, 1.25]


def _duplicate_position(ds: Dataset) -> None:
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) - 10.0  # onto slice 3


def _gap(ds: Dataset) -> None:
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 3.0


def _other_series(ds: Dataset) -> None:
    ds.SeriesInstanceUID = "2.25.1234"


def _no_orientation(ds: Dataset) -> None:
    del ds.ImageOrientationPatient


@pytest.mark.parametrize(
    ("index", "edit", "message"),
    [
        (4, _rotate_orientation, "mixed orientation"),
        (4, _smaller, "mixed size"),
        (4, _other_spacing, "mixed pixel spacing"),
        (4, _duplicate_position, "duplicate slice position"),
        (9, _gap, "non-uniform slice spacing"),
        (4, _other_series, "2 series"),
        (4, _no_orientation, "lacks ImageOrientationPatient"),
    ],
)
def test_irregular_series_is_rejected(acdc_series: AcdcSeries, tmp_path: Path, index: int,
                                      edit, message: str) -> None:
    paths = _edited(acdc_series, tmp_path, index, edit)
    with pytest.raises(SeriesError, match=message) as info:
        load_series(paths)
    assert isinstance(info.value, ValueError)
    text = str(info.value)
    assert "TEST^ACDC" not in text and "ACDC-TEST" not in text  # no PHI in errors


def test_sheared_stack_is_rejected(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    """A gantry-tilt-like stack (each slice shifted in-plane) cannot be a Volume."""

    def tilt(i: int, ds: Dataset) -> None:
        pos = [float(v) for v in ds.ImagePositionPatient]
        pos[1] += 2.0 * i
        ds.ImagePositionPatient = pos

    with pytest.raises(SeriesError, match="not stacked along their normal"):
        load_series(rewrite(acdc_series.paths, tmp_path, tilt))


def test_not_dicom_and_empty_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(SeriesError, match="not a readable DICOM file"):
        load_series([junk])
    with pytest.raises(SeriesError, match="no files"):
        load_series([])


def test_instance_without_pixels_is_rejected(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    def no_pixels(i: int, ds: Dataset) -> None:
        if i == 2:
            del ds.PixelData

    with pytest.raises(SeriesError, match="no pixel data"):
        load_series(rewrite(acdc_series.paths, tmp_path, no_pixels))
