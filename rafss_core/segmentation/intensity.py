"""Intensity models from the references: relabel a slice by spatial prior x intensity likelihood.

A box-prompted model given a box that is too large (an end-systolic cavity prompted from
end-diastolic references) fills it with whatever lies inside: cavity and the wall around it.
The references know better what each label looks like: per label, the distribution of its
intensities. This is the classical atlas-prior plus intensity-model segmentation (as in
expectation-maximisation brain segmentation), with the model's prediction as the prior:

* **prior** ``p_l(x)``: each predicted label mask blurred by a Gaussian whose width follows the
  label's size, so neighbouring labels may take over a pixel but distant ones cannot;
  background takes what the labels leave, with a floor;
* **likelihood** ``q_l(I)``: a smoothed histogram of each label's intensities in the retrieved
  reference slices, and of the background near their labels; intensities are standardised per
  slice by the median and interquartile range of the region around the labels, so scanners and
  windowing need not agree;
* each pixel near the prediction takes ``argmax_l log p_l(x) + weight * log q_l(I(x))``.

Nothing here knows the anatomy: the labels, their intensities and their sizes all come from
the references and the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BINS = 48
RANGE = (-4.0, 4.0)  # standardised intensity range of the histograms
FLOOR = 1e-3  # smallest probability of any label or intensity


def _region(mask: np.ndarray, grow: float = 0.25) -> np.ndarray:
    """``mask`` dilated by ``grow`` of its equivalent diameter (at least 2 pixels)."""
    area = int(mask.sum())
    if area == 0:
        return mask.copy()
    radius = max(2, round(grow * 2 * np.sqrt(area / np.pi)))
    return ndimage.binary_dilation(mask, iterations=radius)


def _standardise(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    values = image[region]
    if values.size < 8:
        return np.zeros_like(image, dtype=np.float32)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return ((image - med) / max(q3 - q1, 1e-3)).astype(np.float32)


def _histogram(values: np.ndarray) -> np.ndarray:
    hist, _ = np.histogram(np.clip(values, *RANGE), bins=BINS, range=RANGE)
    hist = ndimage.gaussian_filter1d(hist.astype(np.float64), 1.5) + 1.0  # Laplace smoothing
    return np.maximum(hist / hist.sum(), FLOOR)


def intensity_models(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     values: Sequence[int]) -> np.ndarray | None:
    """``(1 + L, BINS)`` intensity distributions (background first) from reference slices
    (images in [0, 1] with their label maps, any shapes). None when no reference holds any
    of ``values``."""
    by_label: list[list[np.ndarray]] = [[] for _ in range(len(values) + 1)]
    for image, lab in zip(images, labels, strict=True):
        union = np.isin(lab, list(values))
        if not union.any():
            continue
        region = _region(union)
        z = _standardise(image, region)
        by_label[0].append(z[region & ~union])
        for i, v in enumerate(values):
            by_label[i + 1].append(z[lab == v])
    if not by_label[0]:
        return None
    return np.stack([_histogram(np.concatenate(parts)) if sum(p.size for p in parts) >= 16
                     else np.full(BINS, 1.0 / BINS) for parts in by_label])


def relabel(image: np.ndarray, label_map: np.ndarray, values: Sequence[int],
            models: np.ndarray, weight: float = 1.0, blur: float = 0.15) -> np.ndarray:
    """The label map re-decided near its labels by prior x intensity likelihood.

    Parameters
    ----------
    image:
        The target slice in [0, 1].
    label_map:
        The model's label map of that slice (label values, 0 background).
    values:
        The label values, in the order of ``models`` rows 1..L.
    models:
        :func:`intensity_models` of the retrieved references.
    weight:
        How much the intensity likelihood counts against the spatial prior.
    blur:
        Prior width as a share of each label's equivalent diameter.
    """
    union = np.isin(label_map, list(values))
    if not union.any():
        return label_map
    region = _region(union)
    z = _standardise(image, region)
    bins = np.clip(((np.clip(z, *RANGE) - RANGE[0]) / (RANGE[1] - RANGE[0]) * BINS).astype(int),
                   0, BINS - 1)
    priors = []
    for v in values:
        m = (label_map == v).astype(np.float64)
        area = m.sum()
        sigma = max(1.0, blur * 2 * np.sqrt(area / np.pi)) if area else 1.0
        priors.append(ndimage.gaussian_filter(m, sigma) if area else np.zeros_like(m))
    fg = np.stack(priors)
    background = np.clip(1.0 - fg.sum(axis=0), 0.0, 1.0)
    prior = np.maximum(np.concatenate([background[None], fg]), FLOOR)
    score = np.log(prior) + weight * np.log(models[:, bins])
    best = score.argmax(axis=0)
    lut = np.asarray([0, *values], dtype=label_map.dtype)
    out = label_map.copy()
    out[region] = lut[best[region]]
    return out
