"""Registration (SimpleITK) of a reference onto a target, failure detection, and fusion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rafss_core.segmentation import metrics
from rafss_core.segmentation.registration import (
    Registered,
    RegistrationParams,
    fuse,
    label_map_of,
    register,
    slice_similarity,
)

FAST = RegistrationParams(rotations=8, start_iterations=15, affine_iterations=30,
                          demons_iterations=(20, 10))


def _phantom(shape=(96, 96), angle=0.0, shift=(0, 0), scale=1.0):
    """A body with an asymmetric organ pair: a bright disc (1) and a grey ellipse (2) on one
    side, so only the right rotation aligns them."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    cy, cx = shape[0] / 2 + shift[0], shape[1] / 2 + shift[1]
    a = np.deg2rad(angle)
    y, x = (yy - cy) / scale, (xx - cx) / scale
    yr, xr = np.cos(a) * y - np.sin(a) * x, np.sin(a) * y + np.cos(a) * x
    body = (yr / 40) ** 2 + (xr / 34) ** 2 <= 1
    organ = (yr + 8) ** 2 + (xr - 12) ** 2 <= 10**2
    side = ((yr - 16) / 7) ** 2 + ((xr + 10) / 14) ** 2 <= 1
    image = 0.2 * body + 0.6 * organ + 0.3 * side
    labels = np.zeros(shape, np.int16)
    labels[organ] = 1
    labels[side & ~organ] = 2
    image = ndimage.gaussian_filter(image, 1.0) + 0.02 * np.random.default_rng(0).random(shape)
    return image.astype(np.float32), labels


def test_a_rotated_shifted_reference_is_registered_back():
    target, truth = _phantom(angle=0)
    reference, labels = _phantom(angle=100, shift=(6, -5), scale=0.9)
    before = metrics.dice(labels == 1, truth == 1)
    out = register(target, reference, labels, params=FAST)
    assert out.ok, out.reason
    assert out.labels.shape == target.shape
    for v in (1, 2):
        assert metrics.dice(out.labels == v, truth == v) > 0.8
    assert before < 0.5  # it had to move: the start was far off
    assert out.similarity > 0.5


def test_without_the_rotation_search_a_large_rotation_is_missed():
    target, truth = _phantom(angle=0)
    reference, labels = _phantom(angle=150)
    out = register(target, reference, labels,
                   params=RegistrationParams(rotations=0, demons_iterations=()))
    searched = register(target, reference, labels, params=FAST)
    assert metrics.dice(searched.labels == 2, truth == 2) > metrics.dice(
        out.labels == 2, truth == 2) + 0.3


def test_3d_stacks_of_different_depth_register():
    target = np.stack([_phantom(scale=s)[0] for s in (0.8, 0.9, 1.0, 0.9, 0.8)])
    truth = np.stack([_phantom(scale=s)[1] for s in (0.8, 0.9, 1.0, 0.9, 0.8)])
    ref = [_phantom(angle=40, scale=s) for s in (0.85, 1.0, 0.85, 0.8)]
    out = register(target, np.stack([r[0] for r in ref]), np.stack([r[1] for r in ref]),
                   (8.0, 1.5, 1.5), (10.0, 1.5, 1.5), FAST)
    assert out.ok and out.labels.shape == target.shape
    assert metrics.dice(out.labels == 1, truth == 1) > 0.7
    assert slice_similarity(out.image, target, out.labels).shape == (5,)


def test_a_registration_that_cannot_match_is_flagged_not_raised():
    target, _ = _phantom()
    noise = np.random.default_rng(1).random(target.shape).astype(np.float32)
    _, labels = _phantom()
    out = register(target, noise, labels, params=RegistrationParams(
        rotations=0, demons_iterations=(), min_similarity=0.5))
    assert not out.ok and out.reason
    flat = register(target, np.zeros_like(target), labels, params=FAST)  # nothing to match
    assert not flat.ok and flat.reason


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="labels"):
        register(np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((4, 4), np.int16))
    with pytest.raises(ValueError, match="2D"):
        register(np.zeros((2, 8, 8)), np.zeros((8, 8)), np.zeros((8, 8), np.int16))


def test_majority_vote_fusion_drops_failed_registrations():
    a = np.array([[1, 1, 0, 2]], np.int16)
    b = np.array([[1, 0, 0, 2]], np.int16)
    c = np.array([[0, 0, 2, 2]], np.int16)
    img = np.zeros((1, 4), np.float32)
    regs = [Registered(a, img, 0.9, True), Registered(b, img, 0.8, True),
            Registered(c, img, 0.7, True), Registered(np.full_like(a, 1), img, 0.0, False)]
    fused = fuse(regs, [1, 2], weighted=False)
    assert fused.shape == (2, 1, 4)
    np.testing.assert_array_equal(label_map_of(fused, [1, 2]), [[1, 0, 0, 2]])
    assert not fuse([regs[-1]], [1, 2]).any()  # all failed: nothing known
