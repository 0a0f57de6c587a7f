from __future__ import annotations

import numpy as np
import pytest
import torch

from rafss_core.segmentation.volume import (
    CT_WINDOWS,
    MinMax,
    PercentileClip,
    Volume,
    Window,
    image_to_model,
    logits_to_source,
    mask_to_model,
    normalise,
    profile_for,
)


def _oblique() -> np.ndarray:
    a = np.deg2rad(30)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return rz


def test_affine_round_trip_oblique():
    v = Volume(np.zeros((4, 5, 6)), spacing=(0.7, 0.8, 3.0), origin=(-10, 20, 5),
               direction=_oblique())
    back = Volume.from_affine(v.array, v.affine)
    assert np.allclose(back.spacing, v.spacing)
    assert np.allclose(back.origin, v.origin)
    assert np.allclose(back.direction, v.direction)
    # voxel (x=2, y=1, z=3) lands where spacing and direction say it should
    expected = np.asarray(v.origin) + v.direction @ (np.array([2, 1, 3]) * v.spacing)
    assert np.allclose((v.affine @ [2, 1, 3, 1])[:3], expected)
    assert np.allclose(v.slice_position(3)[:3], np.asarray(v.origin) + 9.0 * v.direction[:, 2])


def test_volume_rejects_bad_geometry():
    with pytest.raises(ValueError, match="Z, Y, X"):
        Volume(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="orthonormal"):
        Volume(np.zeros((2, 2, 2)), direction=np.diag([1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))
    v = Volume(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="shape"):
        v.with_array(np.zeros((2, 3, 5)))


def test_ct_window_hand_values():
    w = Window(40, 400)  # [-160, 240] HU
    out = w.apply(np.array([-1000, -160, 40, 240, 3000]))
    assert np.allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert CT_WINDOWS["lung"] == Window(-600, 1500)


def test_percentile_clip_and_minmax():
    a = np.arange(1001, dtype=np.float32)  # percentiles are exact on 0..1000
    out = PercentileClip(0.5, 99.5).apply(a)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.isclose(out[500], (500 - 5) / (995 - 5))
    assert np.allclose(MinMax().apply(np.array([2.0, 4.0, 6.0])), [0, 0.5, 1])
    assert not MinMax().apply(np.full(3, 7.0)).any()


def test_profile_by_modality():
    assert profile_for("CT") == CT_WINDOWS["soft-tissue"]
    assert profile_for("mr") == PercentileClip()
    assert profile_for("US") == MinMax()
    assert profile_for("CT", "bone") == CT_WINDOWS["bone"]
    with pytest.raises(ValueError, match="unknown intensity profile"):
        profile_for("CT", "nonsense")
    v = Volume(np.array([[[-1000.0, 40.0]]]), modality="CT")
    assert np.allclose(normalise(v), [[[0.0, 0.5]]])


def test_image_to_model_is_imagenet_normalised():
    x = image_to_model(np.ones((2, 10, 12), np.float32), 16)
    assert x.shape == (2, 3, 16, 16)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 5, 5], expected, atol=1e-6)


def test_mask_round_trip_is_exact_for_integer_factor():
    rng = np.random.default_rng(0)
    mask = rng.random((64, 64)) > 0.5  # worst case: independent pixels
    model = mask_to_model(mask[None], 256)
    assert model.shape == (1, 1, 256, 256)
    back = logits_to_source(model * 20 - 10, (64, 64))[0, 0].numpy() > 0
    assert np.array_equal(back, mask)


def test_mask_round_trip_non_square_lands_on_source_grid():
    mask = np.zeros((96, 80), bool)
    mask[20:70, 10:50] = True
    back = logits_to_source(mask_to_model(mask[None], 256) * 20 - 10, (96, 80))[0, 0] > 0
    assert back.shape == (96, 80)
    assert np.array_equal(back.numpy(), mask)  # block shapes survive exactly
