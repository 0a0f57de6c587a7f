from __future__ import annotations

import numpy as np
import pytest

from rafss_core.segmentation.models import ModelBundle, load_models


@pytest.fixture(scope="session")
def tiny_models() -> ModelBundle:
    return load_models("tiny-random")


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


@pytest.fixture(scope="session")
def synthetic_case() -> tuple[np.ndarray, np.ndarray]:
    """Five 96x80 'cardiac-like' slices: ring (2) around a disc (3), a side blob (1).

    Non-square on purpose, so every resampling path is exercised. The last slice has no
    label 1, so 'absent' references are present too.
    """
    rng = np.random.default_rng(7)
    shape = (96, 80)
    images, labels = [], []
    for i in range(5):
        cy, cx = 48 + i, 40 - i
        lab = np.zeros(shape, np.int16)
        lab[_disc(shape, cy, cx, 16 - i)] = 2
        lab[_disc(shape, cy, cx, 10 - i)] = 3
        if i < 4:
            lab[_disc(shape, cy - 4, cx - 24, 8)] = 1
        img = 0.2 + 0.25 * lab + 0.05 * rng.standard_normal(shape)
        images.append(np.clip(img, 0, 1).astype(np.float32))
        labels.append(lab)
    return np.stack(images), np.stack(labels)
