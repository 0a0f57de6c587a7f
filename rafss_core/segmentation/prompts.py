"""Prompts from retrieved references: presence vote, box, dense prior, and nested labels.

For one target slice and one label, the top-k retrieved reference masks (already resampled onto
the target grid) give:

* **presence**: the label is predicted only where at least ``presence`` of the k references
  contain it (majority vote by default); otherwise the label is absent from the slice;
* **box**: the per-coordinate median of the boxes of the references that contain it, grown by a
  margin (box-prompted models tolerate a loose box better than a tight wrong one);
* **prior**: the mean of the k masks, a soft transferred mask used as a dense prompt.

**Nested labels.** A box cannot describe a ring: the myocardium's box covers the LV cavity
inside it. Where the references show label ``b`` lying inside the filled outline of label
``a`` (ACDC: LV inside MYO), ``a`` is prompted as its filled outline (``a`` plus what it
encloses) and the enclosed labels are subtracted from its prediction afterwards
(see :func:`enclosures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the target grid


@dataclass(frozen=True)
class PromptRule:
    presence: float = 0.5  # share of the top-k that must contain the label
    # box growth, as a share of the target's longest side, on each edge; chosen on ACDC val
    # with the intensity model on (0, 0.01, 0.02, 0.03 and 0.05 measured, README)
    margin: float = 0.02
    box_from: str = "median"  # "median" of the present references' boxes, or "top1"
    dense_prior: bool = True  # also give the transferred mask as a dense prompt
    refine: bool = False  # decode again with the box of the first prediction
    nesting: bool = True  # prompt rings as filled outlines and subtract what they enclose
    align: bool = True  # move each reference's labels to where they match the target
    # a nested ring: "outline" = the model's filled outline minus the enclosed labels;
    # "thickness" = the enclosed labels' prediction grown by the references' ring thickness
    ring: str = "thickness"
    rerank: int = 16  # >k: retrieve this many; boxes from the k annotated ones matching best
    # keep, per label, only as many connected components of a slice's prediction as the most
    # fragmented of its top-k references holds (largest first); chosen on ACDC val (README)
    components: bool = True
    # > 0: re-decide each slice near its labels by the prediction (spatial prior) times the
    # references' intensity model per label, with this weight (see segmentation/intensity.py)
    intensity: float = 0.75  # chosen on ACDC val (0 = off, 0.75, 1, 2 measured)


def box_of(mask: np.ndarray) -> Box | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def resample_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A reference label map onto the target grid (nearest, pixel centres aligned)."""
    if labels.shape == shape:
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int),
                      labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


def filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled. Only its bounding box (and a one-pixel border) is
    searched: everything outside it is background connected to the image edge, so the result
    is the same as filling the whole image."""
    from scipy.ndimage import binary_fill_holes

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return np.zeros(mask.shape, dtype=bool)
    y0, y1 = max(0, rows[0] - 1), min(mask.shape[0], rows[-1] + 2)
    x0, x1 = max(0, cols[0] - 1), min(mask.shape[1], cols[-1] + 2)
    out = np.zeros(mask.shape, dtype=bool)
    out[y0:y1, x0:x1] = binary_fill_holes(mask[y0:y1, x0:x1])
    return out


def enclosures(reference_labels: Sequence[np.ndarray], values: Sequence[int],
               inside: float = 0.9, support: float = 0.5) -> dict[int, list[int]]:
    """``{a: [b, ...]}``: labels ``b`` that lie inside label ``a``'s filled outline.

    ``b`` is enclosed by ``a`` when, on at least ``support`` of the reference slices that
    hold both, at least ``inside`` of ``b``'s pixels fall in the holes of ``a``.
    """
    out: dict[int, list[int]] = {}
    for a in values:
        for b in values:
            if a == b:
                continue
            both = votes = 0
            for lab in reference_labels:
                mask_b = lab == b
                n_b = int(mask_b.sum())
                if n_b == 0 or not (lab == a).any():
                    continue
                both += 1
                votes += int((filled(lab == a) & mask_b).sum()) >= inside * n_b
            if both and votes >= support * both:
                out.setdefault(a, []).append(b)
    return out


@dataclass(frozen=True)
class LabelPrompt:
    """The prompt for one (target slice, label); ``box`` None means "absent"."""

    box: Box | None
    prior: np.ndarray | None  # (H, W) float in [0, 1]


def label_prompt(reference_labels: Sequence[np.ndarray], value: int, rule: PromptRule,
                 enclosed: Sequence[int] = ()) -> LabelPrompt:
    """The prompt for label ``value`` from the top-k references' label maps (target grid,
    most similar first). With ``enclosed`` labels the filled outline is prompted."""
    masks = []
    for lab in reference_labels:
        m = lab == value
        if enclosed and m.any():
            m = filled(m | np.isin(lab, list(enclosed)))
        masks.append(m)
    k = len(masks)
    present = [m for m in masks if m.any()]
    if k == 0 or len(present) < rule.presence * k or not present:
        return LabelPrompt(None, None)
    boxes = np.array([box_of(m) for m in present])
    if rule.box_from == "top1":
        box = boxes[0] if masks[0].any() else np.median(boxes, axis=0)
    else:
        box = np.median(boxes, axis=0)
    shape = masks[0].shape
    grow = rule.margin * max(shape)
    x0, y0, x1, y1 = (float(v) for v in box)
    grown = (max(0.0, x0 - grow), max(0.0, y0 - grow), min(shape[1] - 1.0, x1 + grow),
             min(shape[0] - 1.0, y1 + grow))
    prior = np.mean(masks, axis=0).astype(np.float32) if rule.dense_prior else None
    return LabelPrompt(grown, prior)


def ring_thickness(reference_labels: Sequence[np.ndarray], outer: int,
                   enclosed: Sequence[int]) -> float | None:
    """Median ring thickness (pixels) of ``outer`` around ``enclosed`` in the references, from
    equivalent-circle radii: ``sqrt((A_ring + A_inner) / pi) - sqrt(A_inner / pi)``."""
    values = []
    for lab in reference_labels:
        inner = int(np.isin(lab, list(enclosed)).sum())
        ring = int((lab == outer).sum())
        if inner and ring:
            values.append(np.sqrt((ring + inner) / np.pi) - np.sqrt(inner / np.pi))
    return float(np.median(values)) if values else None


def grown_ring(inner: np.ndarray, thickness: float) -> np.ndarray:
    """The ring of width ``thickness`` around a binary mask (disk-shaped dilation)."""
    from scipy.ndimage import binary_dilation

    r = max(1, round(thickness))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return binary_dilation(inner, structure=(yy**2 + xx**2) <= r * r) & ~inner


def keep_components(labels: np.ndarray, reference_labels: Sequence[np.ndarray],
                    values: Sequence[int]) -> np.ndarray:
    """``labels`` (one slice) with, per label, only as many connected components as the most
    fragmented of ``reference_labels`` holds, the largest first; the rest become background.
    A label that no reference holds is left as it is."""
    from scipy.ndimage import label as connected

    out = labels.copy()
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        allowed = max((connected(ref == value)[1] for ref in reference_labels), default=0)
        found, count = connected(mask)
        if allowed == 0 or count <= allowed:
            continue
        sizes = np.bincount(found.ravel())[1:]
        kept = np.argsort(sizes)[::-1][:allowed] + 1
        out[mask & ~np.isin(found, kept)] = 0
    return out
