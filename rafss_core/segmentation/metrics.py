"""Overlap and surface metrics, spacing-aware.

Conventions for empty masks (documented in the README too):

* both empty: Dice = IoU = 1.0 and HD95 = 0.0 (a correct "absent" answer);
* exactly one empty: Dice = IoU = 0.0 and HD95 = NaN (a surface distance to nothing is
  undefined); aggregate HD95 with ``np.nanmean`` and report how many cases were undefined.

HD95 follows MedPy: the 95th percentile of the pooled surface distances in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = pred.astype(bool), ref.astype(bool)
    total = int(p.sum()) + int(r.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = pred.astype(bool), ref.astype(bool)
    union = int(np.logical_or(p, r).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, r).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm.

    ``spacing`` is given per array axis (for a ``(Z, Y, X)`` array: ``(sz, sy, sx)``).
    """
    p, r = pred.astype(bool), ref.astype(bool)
    if len(spacing) != p.ndim:
        raise ValueError(f"spacing needs {p.ndim} values (one per array axis), got {spacing}")
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return float("nan")
    sp, sr = _surface(p), _surface(r)
    dist_to_r = ndimage.distance_transform_edt(~sr, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    distances = np.concatenate([dist_to_r[sp], dist_to_p[sr]])
    return float(np.percentile(distances, 95))


def oracle_slice_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice over only the slices (axis 0) whose reference holds the label: the few-shot
    protocol of SSL-ALPNet and its successors, which leaves presence to an oracle. NaN when no
    slice holds the label (the case does not count)."""
    held = ref.astype(bool).reshape(ref.shape[0], -1).any(axis=1)
    if not held.any():
        return float("nan")
    return dice(pred[held], ref[held])


def per_label(
    pred: np.ndarray, ref: np.ndarray, labels: Sequence[int], spacing: Sequence[float]
) -> dict[int, dict[str, float]]:
    """Dice, IoU and HD95 for each label value of two label maps."""
    return {
        int(v): {
            "dice": dice(pred == v, ref == v),
            "iou": iou(pred == v, ref == v),
            "hd95": hd95(pred == v, ref == v, spacing),
        }
        for v in labels
    }
