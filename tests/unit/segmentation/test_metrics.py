from __future__ import annotations

import math

import numpy as np
import pytest

from rafss_core.segmentation.metrics import dice, hd95, iou, per_label


def test_dice_and_iou_hand_computed():
    pred = np.zeros((1, 1, 10), bool)
    ref = np.zeros((1, 1, 10), bool)
    pred[..., 0:4] = True  # 4 voxels
    ref[..., 1:7] = True  # 6 voxels, overlap 3
    assert dice(pred, ref) == pytest.approx(2 * 3 / 10)
    assert iou(pred, ref) == pytest.approx(3 / 7)


def test_empty_conventions():
    empty = np.zeros((2, 3, 3), bool)
    full = np.ones((2, 3, 3), bool)
    assert dice(empty, empty) == 1.0
    assert iou(empty, empty) == 1.0
    assert hd95(empty, empty, (1, 1, 1)) == 0.0
    assert dice(empty, full) == 0.0
    assert iou(full, empty) == 0.0
    assert math.isnan(hd95(empty, full, (1, 1, 1)))


def test_hd95_uses_spacing_per_axis():
    a = np.zeros((1, 1, 8), bool)
    b = np.zeros((1, 1, 8), bool)
    a[0, 0, 0] = True
    b[0, 0, 3] = True
    assert hd95(a, b, (5.0, 5.0, 2.0)) == pytest.approx(6.0)  # 3 columns * 2 mm
    c = np.zeros((4, 1, 1), bool)
    d = np.zeros((4, 1, 1), bool)
    c[0] = True
    d[2] = True
    assert hd95(c, d, (10.0, 1.0, 1.0)) == pytest.approx(20.0)  # 2 slices * 10 mm


def test_hd95_hand_computed_percentile():
    # ref: a 1x1x1 voxel at x=0; pred: voxels at x=0 and x=10. Surface distances:
    # pred->ref: [0, 10]; ref->pred: [0]. Pooled [0, 0, 10] -> 95th percentile = 9.0
    ref = np.zeros((1, 1, 11), bool)
    pred = np.zeros((1, 1, 11), bool)
    ref[0, 0, 0] = True
    pred[0, 0, [0, 10]] = True
    assert hd95(pred, ref, (1, 1, 1)) == pytest.approx(np.percentile([0, 0, 10], 95))
    assert hd95(pred, ref, (1, 1, 1)) == pytest.approx(9.0)


def test_identical_masks_are_perfect_and_spacing_is_validated():
    m = np.zeros((3, 8, 8), bool)
    m[1, 2:6, 2:6] = True
    assert dice(m, m) == 1.0 and hd95(m, m, (2, 1, 1)) == 0.0
    with pytest.raises(ValueError, match="spacing"):
        hd95(m, m, (1, 1))


def test_per_label():
    pred = np.array([[[0, 1, 1, 2]]])
    ref = np.array([[[0, 1, 2, 2]]])
    scores = per_label(pred, ref, [1, 2], (1, 1, 1))
    assert scores[1]["dice"] == pytest.approx(2 / 3)
    assert scores[2]["dice"] == pytest.approx(2 / 3)
    assert scores[1]["iou"] == pytest.approx(0.5)


def test_oracle_slice_dice_counts_only_slices_that_hold_the_label():
    import math

    from rafss_core.segmentation.metrics import dice, oracle_slice_dice

    ref = np.zeros((3, 4, 4), bool)
    ref[1, :2] = True
    pred = np.zeros_like(ref)
    pred[1, :2] = True
    pred[2] = True  # a false positive on a slice the truth leaves empty
    assert oracle_slice_dice(pred, ref) == 1.0
    assert dice(pred, ref) < 1.0
    assert math.isnan(oracle_slice_dice(pred, np.zeros_like(ref)))
