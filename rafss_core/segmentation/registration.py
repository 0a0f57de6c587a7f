"""Reference -> target registration and label fusion (SimpleITK; arrays in, arrays out).

One path serves 2D slices and 3D volumes alike (SimpleITK is dimension-generic):

1. **Histogram matching** of the reference image onto the target's intensities.
2. **Robust start.** Images are centred on each other (geometry), then a rotation about the
   stack axis (the slice normal) is searched exhaustively at the coarsest level: patients lie
   at arbitrary in-plane rotations, and an affine started from the identity misses them. Each
   start angle gets a short similarity (rotation, uniform scale, translation) registration;
   the one with the best metric wins.
3. **Affine** by Mattes mutual information in a multi-resolution pyramid.
4. **Deformable**: fast symmetric-forces demons on the affinely aligned images, coarse to fine.
5. The reference labels are warped with nearest-neighbour interpolation.

Quality: the normalised cross-correlation (NCC) of the warped reference image with the target
inside the warped labels' neighbourhood. A registration that fails (the optimiser raises, the
affine collapses or explodes, the labels leave the image, or the NCC is below
``min_similarity``) is returned with ``ok=False`` so callers can fall back and flag it.

Arrays are in index order (``(Z, Y, X)`` or ``(Y, X)``); spacing likewise, per array axis.
Both images are placed at the origin with identity direction: stacks are registered as stacks,
so a target and a reference from scanners with different patient orientations still align.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationParams:
    rotations: int = 12  # in-plane start angles tried (0 = start from the identity)
    start_iterations: int = 25  # similarity iterations per start angle, coarsest level
    affine_iterations: int = 60  # per level
    shrink: tuple[int, ...] = (4, 2, 1)  # pyramid, in-plane; z is never shrunk below 1 voxel
    demons_iterations: tuple[int, ...] = (40, 20, 10)  # per level; () skips the deformable step
    demons_sigma: float = 1.5  # displacement-field smoothing (voxels)
    histogram_match: bool = True
    sampling: float = 0.25  # share of voxels sampled by the metric
    min_similarity: float = 0.2  # NCC below this marks the registration failed
    max_scale: float = 3.0  # affine determinant outside [1/s^d, s^d] marks it failed
    seed: int = 7


@dataclass(frozen=True)
class Registered:
    """A reference warped onto the target grid."""

    labels: np.ndarray  # warped label map (nearest neighbour), the target's shape
    image: np.ndarray  # warped reference image (linear)
    similarity: float  # NCC of warped image and target around the warped labels
    ok: bool
    reason: str = ""  # why it failed, when it did


def _image(array: np.ndarray, spacing: Sequence[float]):  # -> sitk.Image
    import SimpleITK as sitk  # noqa: N813 (the library's own alias)

    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    return img


def _rotation_start(fixed, moving, params: RegistrationParams):  # -> sitk.Transform
    """Centred similarity transform, rotated about the stack axis by the best start angle."""
    import SimpleITK as sitk  # noqa: N813 (the library's own alias)

    dim = fixed.GetDimension()
    base = (sitk.Similarity2DTransform() if dim == 2 else sitk.Similarity3DTransform())
    centred = sitk.CenteredTransformInitializer(
        fixed, moving, base, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    if params.rotations <= 1:
        return centred
    best, best_value = centred, math.inf
    for i in range(params.rotations):
        angle = -math.pi + 2 * math.pi * i / params.rotations
        start = (sitk.Similarity2DTransform(centred) if dim == 2
                 else sitk.Similarity3DTransform(centred))
        if dim == 2:
            start.SetAngle(angle)
        else:  # rotation about the stack (index z) axis: versor (0, 0, sin(a/2)), cos(a/2)
            start.SetRotation((0.0, 0.0, 1.0), angle)
        reg = _method(params, iterations=params.start_iterations, shrink=(params.shrink[0],),
                      fixed=fixed)
        reg.SetInitialTransform(start, inPlace=True)
        try:
            value = reg.Execute(fixed, moving) and reg.GetMetricValue()
        except RuntimeError:
            continue
        if value < best_value:
            best, best_value = start, value
    return best


def _method(params: RegistrationParams, iterations: int, shrink: Sequence[int], fixed):
    import SimpleITK as sitk  # noqa: N813 (the library's own alias)

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(params.sampling, params.seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations,
        gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    factors = [_shrink_factors(fixed, s) for s in shrink]
    reg.SetShrinkFactorsPerLevel(shrinkFactors=[max(f) for f in factors])
    reg.SetSmoothingSigmasPerLevel(smoothingSigmas=[max(0, s - 1) for s in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _shrink_factors(image, shrink: int) -> list[int]:
    """In-plane shrink; an axis is never shrunk below 4 voxels (thick stacks keep z)."""
    size = image.GetSize()
    return [max(1, min(shrink, s // 4)) for s in size]


def _demons(fixed, moving, params: RegistrationParams):  # -> displacement field transform
    import SimpleITK as sitk  # noqa: N813 (the library's own alias)

    field = None
    levels = list(zip(params.shrink, params.demons_iterations, strict=False))
    for shrink, iterations in levels:
        factors = _shrink_factors(fixed, shrink)
        f = sitk.Shrink(fixed, factors) if max(factors) > 1 else fixed
        m = sitk.Shrink(moving, factors) if max(factors) > 1 else moving
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(iterations)
        demons.SetStandardDeviations(params.demons_sigma)
        if field is None:
            field = demons.Execute(f, m)
        else:
            start = sitk.Resample(field, f, sitk.Transform(), sitk.sitkLinear, 0.0,
                                  field.GetPixelID())
            field = demons.Execute(f, m, start)
    if field is None:
        return None
    full = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0,
                         sitk.sitkVectorFloat64)
    return sitk.DisplacementFieldTransform(full)


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation of two arrays (inside ``mask`` when given)."""
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.astype(np.float64).ravel() - float(np.mean(a))
    b = b.astype(np.float64).ravel() - float(np.mean(b))
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / denom) if denom > 1e-12 else 0.0


def _neighbourhood(labels: np.ndarray, grow: float = 0.25) -> np.ndarray:
    """The labels' bounding box grown by ``grow`` of its size on each side (in-plane)."""
    out = np.zeros(labels.shape, dtype=bool)
    idx = np.nonzero(labels)
    if len(idx[0]) == 0:
        return out
    box = []
    for axis, ix in enumerate(idx):
        lo, hi = int(ix.min()), int(ix.max()) + 1
        g = 0 if (labels.ndim == 3 and axis == 0) else round((hi - lo) * grow)
        box.append(slice(max(0, lo - g), min(labels.shape[axis], hi + g)))
    out[tuple(box)] = True
    return out


def register(target: np.ndarray, reference: np.ndarray, labels: np.ndarray,
             target_spacing: Sequence[float] | None = None,
             reference_spacing: Sequence[float] | None = None,
             params: RegistrationParams | None = None) -> Registered:
    """Register ``reference`` (with its ``labels``) onto ``target``; see the module docstring.

    Parameters
    ----------
    target, reference:
        Images in [0, 1], 2D or 3D, index order; they may differ in shape.
    labels:
        The reference's label map, ``reference``'s shape.
    target_spacing, reference_spacing:
        Per array axis; None means 1 (pixel units, e.g. slices of a de-identified bank).
    params:
        :class:`RegistrationParams`; defaults when None.

    Returns
    -------
    Registered
        Warped labels and image on the target's grid, the NCC, and whether it succeeded. It
        never raises for a failed optimisation: ``ok`` is False and ``reason`` says why.
    """
    import SimpleITK as sitk  # noqa: N813 (the library's own alias)

    p = params or RegistrationParams()
    if reference.shape != labels.shape:
        raise ValueError(f"reference {reference.shape} and labels {labels.shape} differ")
    if target.ndim != reference.ndim:
        raise ValueError(f"target is {target.ndim}D, reference {reference.ndim}D")
    fixed = _image(target, target_spacing or (1.0,) * target.ndim)
    moving = _image(reference, reference_spacing or (1.0,) * reference.ndim)
    moving_labels = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.int16))
    moving_labels.CopyInformation(moving)
    empty = np.zeros(target.shape, dtype=labels.dtype)
    try:
        if p.histogram_match:
            moving = sitk.HistogramMatching(moving, fixed, numberOfHistogramLevels=64,
                                            numberOfMatchPoints=7, thresholdAtMeanIntensity=False)
        start = _rotation_start(fixed, moving, p)
        affine = sitk.AffineTransform(fixed.GetDimension())
        affine.SetMatrix(start.GetMatrix())
        affine.SetTranslation(start.GetTranslation())
        affine.SetCenter(start.GetCenter())
        reg = _method(p, p.affine_iterations, p.shrink, fixed)
        reg.SetInitialTransform(affine, inPlace=True)
        reg.Execute(fixed, moving)
        det = abs(float(np.linalg.det(np.reshape(affine.GetMatrix(), (target.ndim,) * 2))))
        limit = p.max_scale ** target.ndim
        if not (1 / limit <= det <= limit) or not np.isfinite(det):
            return Registered(empty, np.zeros(target.shape, np.float32), 0.0, False,
                              f"affine diverged (determinant {det:.3g})")
        transform: sitk.Transform = affine
        if p.demons_iterations:
            aligned = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)
            field = _demons(fixed, aligned, p)
            if field is not None:
                transform = sitk.CompositeTransform([affine, field])
        warped = sitk.GetArrayFromImage(
            sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0))
        warped_labels = sitk.GetArrayFromImage(
            sitk.Resample(moving_labels, fixed, transform, sitk.sitkNearestNeighbor, 0))
    except RuntimeError as exc:  # ITK exceptions arrive as RuntimeError
        return Registered(empty, np.zeros(target.shape, np.float32), 0.0, False,
                          f"optimiser failed: {str(exc).splitlines()[-1][:120]}")
    warped_labels = warped_labels.astype(labels.dtype)
    if labels.any() and not warped_labels.any():
        return Registered(warped_labels, warped, 0.0, False, "labels left the target image")
    region = _neighbourhood(warped_labels) if warped_labels.any() else None
    similarity = ncc(warped, target, region)
    ok = similarity >= p.min_similarity
    return Registered(warped_labels, warped.astype(np.float32), similarity, ok,
                      "" if ok else f"low similarity after alignment ({similarity:.2f})")


def slice_similarity(warped: np.ndarray, target: np.ndarray,
                     labels: np.ndarray) -> np.ndarray:
    """Per-slice NCC ``(Z,)`` of a warped reference with a 3D target, around the warped labels
    of that slice (the whole slice where it holds none); a 2D pair gives one value."""
    if target.ndim == 2:
        return np.array([ncc(warped, target, _neighbourhood(labels) if labels.any() else None)])
    return np.array([ncc(warped[z], target[z],
                         _neighbourhood(labels[z]) if labels[z].any() else None)
                     for z in range(target.shape[0])], dtype=np.float32)


def fuse(registered: Sequence[Registered], values: Sequence[int],
         weighted: bool = True) -> np.ndarray:
    """Per-label probability maps ``(L, *shape)`` from the successful registrations.

    Majority vote of the warped label maps; with ``weighted`` each reference's vote counts in
    proportion to its similarity after alignment. All failed: zeros (nothing is known).
    """
    good = [r for r in registered if r.ok]
    if not good:
        shape = registered[0].labels.shape if registered else (0,)
        return np.zeros((len(values), *shape), dtype=np.float32)
    w = np.array([max(r.similarity, 1e-3) if weighted else 1.0 for r in good], np.float64)
    w = w / w.sum()
    out = np.zeros((len(values), *good[0].labels.shape), dtype=np.float32)
    for weight, r in zip(w, good, strict=True):
        for i, v in enumerate(values):
            out[i] += weight * (r.labels == v)
    return out


def label_map_of(probabilities: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Majority vote of fused probabilities: each pixel takes the label with the most votes,
    background included (background's vote is what the labels leave)."""
    if len(values) == 0:
        return np.zeros(probabilities.shape[1:], dtype=np.uint16)
    background = 1.0 - probabilities.sum(axis=0)
    best = probabilities.argmax(axis=0)
    lut = np.asarray(values, dtype=np.uint16)
    return np.where(probabilities.max(axis=0) > background, lut[best], 0).astype(np.uint16)
