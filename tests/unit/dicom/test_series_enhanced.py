"""Enhanced multi-frame MR and CT (built by highdicom's legacy converters) load like the series."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage

from rafss_core.dicom import SeriesError, load_series
from tests.unit.dicom.helpers import MR_ONLY, AcdcSeries, enhanced_mr, shuffled_datasets

pytestmark = pytest.mark.data

def test_enhanced_mr_loads_to_the_same_volume(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    path = enhanced_mr(acdc_series, tmp_path / "enhanced_mr.dcm")
    assert int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames) == 10
    loaded = load_series([path])
    np.testing.assert_array_equal(loaded.volume.array, acdc_series.stored)
    np.testing.assert_allclose(loaded.volume.affine, acdc_series.volume.affine, atol=1e-4)
    assert loaded.volume.modality == "MR"
    frames = [inst.frame_number for inst in loaded.instances]
    assert sorted(frames) == list(range(1, 11))
    assert frames != list(range(1, 11))  # frames were stored shuffled; z order comes from geometry
    assert loaded.is_multiframe and len(loaded.source_datasets) == 1


def test_enhanced_ct_applies_per_frame_rescale(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    datasets = shuffled_datasets(acdc_series)
    for ds in datasets:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = 120
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        for key in MR_ONLY:
            delattr(ds, key)
    ct = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=hd.UID(), series_number=3, sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    path = tmp_path / "enhanced_ct.dcm"
    ct.save_as(path)
    loaded = load_series([path])
    assert loaded.volume.modality == "CT"
    np.testing.assert_array_equal(loaded.volume.array, acdc_series.stored - 1024)


def test_multiframe_without_geometry_is_rejected(acdc_series: AcdcSeries, tmp_path: Path) -> None:
    path = enhanced_mr(acdc_series, tmp_path / "enhanced_mr.dcm")
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(SeriesError, match="frame 1 lacks a Plane Position"):
        load_series([path])
