"""Volumes (pixels + geometry), intensity profiles and the exact model-grid round trip.

Conventions (the same as ITK and DICOM):

* ``Volume.array`` is indexed ``(Z, Y, X)``: slice, row, column.
* ``spacing`` is ``(x, y, z)`` in mm: column spacing, row spacing, slice spacing.
* ``origin`` is the LPS patient position (mm) of voxel ``(0, 0, 0)``.
* ``direction`` is a 3x3 matrix whose *columns* are the LPS unit vectors of the index axes
  ``x`` (columns), ``y`` (rows) and ``z`` (slices).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class Volume:
    """A 3D image on a physical grid."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = "OT"

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be (Z, Y, X); got shape {self.array.shape}")
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.shape != (3, 3):
            raise ValueError(f"direction must be 3x3; got {direction.shape}")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise ValueError("direction must be orthonormal (columns are unit axis vectors)")
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive; got {self.spacing}")
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def num_slices(self) -> int:
        return int(self.array.shape[0])

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping voxel index ``(x, y, z, 1)`` to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    @property
    def slice_normal(self) -> np.ndarray:
        return self.direction[:, 2]

    def slice_position(self, z: int) -> np.ndarray:
        """LPS position (mm) of the first voxel of slice ``z`` (DICOM ImagePositionPatient)."""
        return self.affine @ np.array([0.0, 0.0, float(z), 1.0])

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry, new pixels (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match volume {self.array.shape}")
        return replace(self, array=array)

    @classmethod
    def from_affine(cls, array: np.ndarray, affine: np.ndarray, modality: str = "OT") -> Volume:
        """Build from a voxel-to-LPS affine (index order ``x, y, z``)."""
        affine = np.asarray(affine, dtype=np.float64)
        cols = affine[:3, :3]
        spacing = np.linalg.norm(cols, axis=0)
        return cls(
            array=array,
            spacing=tuple(spacing),  # type: ignore[arg-type]
            origin=tuple(affine[:3, 3]),  # type: ignore[arg-type]
            direction=cols / spacing[None, :],
            modality=modality,
        )


# --------------------------------------------------------------------------------------------
# Intensity profiles: scale a volume to [0, 1] float32


@dataclass(frozen=True)
class Window:
    """CT window (level/width in HU)."""

    center: float
    width: float
    kind: Literal["window"] = "window"

    def apply(self, array: np.ndarray) -> np.ndarray:
        lo = self.center - self.width / 2.0
        return np.clip((array.astype(np.float32) - lo) / self.width, 0.0, 1.0)


@dataclass(frozen=True)
class PercentileClip:
    """Clip to the given percentiles of the volume, then min-max scale (MR)."""

    lower: float = 0.5
    upper: float = 99.5
    kind: Literal["percentile"] = "percentile"

    def apply(self, array: np.ndarray) -> np.ndarray:
        a = array.astype(np.float32)
        lo, hi = np.percentile(a, [self.lower, self.upper])
        if hi <= lo:
            return np.zeros_like(a)
        return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


@dataclass(frozen=True)
class MinMax:
    """Generic min-max scaling."""

    kind: Literal["minmax"] = "minmax"

    def apply(self, array: np.ndarray) -> np.ndarray:
        a = array.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        if hi <= lo:
            return np.zeros_like(a)
        return (a - lo) / (hi - lo)


IntensityProfile = Window | PercentileClip | MinMax

CT_WINDOWS: dict[str, Window] = {
    "soft-tissue": Window(40, 400),
    "abdomen": Window(60, 400),
    "liver": Window(80, 150),
    "mediastinum": Window(50, 350),
    "lung": Window(-600, 1500),
    "bone": Window(400, 1800),
    "brain": Window(40, 80),
}


def profile_for(modality: str, name: str | None = None) -> IntensityProfile:
    """Intensity profile: CT window (by name), MR percentile clip, otherwise min-max."""
    modality = modality.upper()
    if name:
        if name in CT_WINDOWS:
            return CT_WINDOWS[name]
        if name == "percentile":
            return PercentileClip()
        if name == "minmax":
            return MinMax()
        known = ", ".join([*CT_WINDOWS, "percentile", "minmax"])
        raise ValueError(f"unknown intensity profile {name!r}; choose one of: {known}")
    if modality == "CT":
        return CT_WINDOWS["soft-tissue"]
    if modality == "MR":
        return PercentileClip()
    return MinMax()


def normalise(volume: Volume, profile: IntensityProfile | None = None) -> np.ndarray:
    """Scale the volume's pixels to float32 in [0, 1] with ``profile`` (default: by modality)."""
    return (profile or profile_for(volume.modality)).apply(volume.array)


# --------------------------------------------------------------------------------------------
# Model-grid round trip
#
# Slices go to a square model grid with bilinear resampling, ``align_corners=False`` (pixel
# centres map to pixel centres), the convention SAM 2 itself uses. Outputs come back with the
# same convention onto exactly the source (rows, columns), so label maps always share the
# source geometry.


def image_to_model(slices: np.ndarray, size: int, device: torch.device | None = None
                   ) -> torch.Tensor:
    """``(N, H, W)`` in [0, 1] -> ``(N, 3, size, size)`` float32, ImageNet-normalised.

    With a GPU ``device`` the slices travel once, from pinned memory, and are resized there.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(slices), dtype=torch.float32)[:, None]
    if device is not None and device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def mask_to_model(masks: np.ndarray, size: int) -> torch.Tensor:
    """Binary ``(N, H, W)`` -> ``(N, 1, size, size)`` float {0, 1}, as SAM 2's ``add_new_mask``."""
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(np.ascontiguousarray(masks), dtype=torch.float32)[:, None]
    if m.shape[-2:] == (size, size):
        return m
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (m >= 0.5).float()


def logits_to_source(logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(N, C, h, w)`` model-grid logits -> ``(N, C, H, W)`` on the source grid."""
    import torch.nn.functional as F

    if tuple(logits.shape[-2:]) == tuple(shape):
        return logits
    return F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
