"""Relabelling by spatial prior x the references' intensity models."""

from __future__ import annotations

import numpy as np

from rafss_core.segmentation import metrics
from rafss_core.segmentation.intensity import intensity_models, relabel


def _heart(shape=(80, 80), cavity=12, wall=6, seed=0):
    """A bright cavity (3) in a dark ring (2), on a mid-grey background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - 40, xx - 40)
    labels = np.zeros(shape, np.int16)
    labels[r <= cavity + wall] = 2
    labels[r <= cavity] = 3
    image = np.choose(labels // 2 + (labels == 3), [0.45, 0.15, 0.85]).astype(np.float32)
    image = np.clip(image + 0.04 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    return image, labels


def test_an_oversized_cavity_gives_its_dark_wall_back():
    refs = [_heart(cavity=14, seed=s) for s in (1, 2)]
    models = intensity_models([r[0] for r in refs], [r[1] for r in refs], [2, 3])
    assert models is not None and models.shape[0] == 3
    image, truth = _heart(cavity=9)  # end-systole: a smaller cavity
    _, big = _heart(cavity=13)  # what the box gave: a cavity as large as the references
    before = metrics.dice(big == 3, truth == 3)
    after = relabel(image, big, [2, 3], models)
    assert metrics.dice(after == 3, truth == 3) > before  # the cavity shrinks towards truth
    # the dark pixels the cavity had claimed go back to the wall
    assert metrics.dice(after == 2, truth == 2) > metrics.dice(big == 2, truth == 2) + 0.2


def test_no_labels_no_change_and_no_reference_labels_no_model():
    image, labels = _heart()
    empty = np.zeros_like(labels)
    models = intensity_models([image], [labels], [2, 3])
    assert (relabel(image, empty, [2, 3], models) == 0).all()
    assert intensity_models([image], [empty], [2, 3]) is None
