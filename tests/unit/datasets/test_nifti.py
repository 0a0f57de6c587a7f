from __future__ import annotations

import nibabel as nib
import numpy as np

from rafss_core.datasets.nifti import read_volume, write_volume
from rafss_core.segmentation.volume import Volume


def test_geometry_round_trip_oblique(tmp_path):
    a = np.deg2rad(20)
    direction = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    labels = np.random.default_rng(0).integers(0, 4, (3, 5, 7)).astype(np.uint16)
    v = Volume(labels, spacing=(0.9, 1.1, 6.0), origin=(-12.5, 30.0, 7.0), direction=direction)
    path = write_volume(v, tmp_path / "x.nii.gz")
    back = read_volume(path)
    assert np.array_equal(back.array, labels)
    assert np.allclose(back.affine, v.affine, atol=1e-5)
    # NIfTI stores RAS: the file's first axis points the other way from LPS x
    assert np.allclose(nib.load(str(path)).affine[:2, 3], [12.5, -30.0], atol=1e-5)


def test_acdc_volume_round_trip(acdc_root, tmp_path):
    src = acdc_root / "labelsTr" / "patient001_frame01.nii.gz"
    v = read_volume(src)
    assert v.shape[0] == nib.load(str(src)).shape[2]  # (Z, Y, X) from nibabel's (X, Y, Z)
    assert np.allclose(v.spacing, (1.5, 1.5, 10.0))
    back = read_volume(write_volume(v, tmp_path / "p.nii.gz"))
    assert np.array_equal(back.array, v.array)
    assert np.allclose(nib.load(str(tmp_path / "p.nii.gz")).affine, nib.load(str(src)).affine)
