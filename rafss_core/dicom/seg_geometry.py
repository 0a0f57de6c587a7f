"""Place a SEG's frames on a volume by their plane positions (no source-image references).

Used by ``read_seg`` when a SEG's frames do not reference the source instances (some viewers
and converters write only Plane Position / Plane Orientation functional groups).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from rafss_core.dicom.errors import SegError
from rafss_core.segmentation.volume import Volume

ORIENTATION_ATOL = 1e-3
POSITION_TOL = 0.05  # of a voxel, along each axis


def masks_by_geometry(seg: Dataset, volume: Volume, numbers: Sequence[int]) -> np.ndarray:
    """``(Z, Y, X, S)`` boolean masks from ``seg``'s frames, one channel per segment number."""
    per_frame = seg.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        raise SegError("no per-frame functional groups")
    shared = (seg.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    if len(frames) != len(per_frame):
        raise SegError(f"{len(frames)} frames but {len(per_frame)} per-frame group items")

    labelmap = str(seg.get("SegmentationType", "")) == "LABELMAP"
    fractional_max = (
        float(seg.get("MaximumFractionalValue", 255))
        if str(seg.get("SegmentationType", "")) == "FRACTIONAL"
        else None
    )
    channel = {int(n): i for i, n in enumerate(numbers)}
    inverse = np.linalg.inv(volume.affine)
    out = np.zeros((*volume.shape, len(numbers)), dtype=bool)
    for i, group in enumerate(per_frame):
        measures = _item(group, shared, "PixelMeasuresSequence")
        if measures is not None and "PixelSpacing" in measures and not np.allclose(
            [float(v) for v in measures.PixelSpacing], volume.spacing[1::-1], rtol=1e-3
        ):
            raise SegError(f"frame {i + 1} has another pixel spacing than the source series")
        _check_orientation(_item(group, shared, "PlaneOrientationSequence"), volume, i)
        position = _item(group, shared, "PlanePositionSequence")
        if position is None:
            raise SegError(f"frame {i + 1} has no Plane Position")
        index = inverse @ np.array([*map(float, position.ImagePositionPatient), 1.0])
        if np.abs(index[:2]).max() > POSITION_TOL:
            raise SegError(f"frame {i + 1} does not start at the source grid's first voxel")
        z = int(np.rint(index[2]))
        if abs(index[2] - z) > POSITION_TOL or not 0 <= z < volume.num_slices:
            raise SegError(f"frame {i + 1} lies on no slice of the source series")
        frame = frames[i]
        if labelmap:
            for number, c in channel.items():
                out[z, ..., c] |= frame == number
            continue
        ident = _item(group, shared, "SegmentIdentificationSequence")
        if ident is None:
            raise SegError(f"frame {i + 1} has no Segment Identification")
        number = int(ident.ReferencedSegmentNumber)
        if number in channel:
            threshold = 0.5 * fractional_max if fractional_max else 0.5
            out[z, ..., channel[number]] |= frame >= threshold
    return out


def _item(group: Dataset, shared: Dataset, sequence: str) -> Dataset | None:
    for source in (group, shared):
        seq = source.get(sequence)
        if seq:
            return seq[0]
    return None


def _check_orientation(item: Dataset | None, volume: Volume, index: int) -> None:
    if item is None:
        raise SegError(f"frame {index + 1} has no Plane Orientation")
    orientation = np.asarray([float(v) for v in item.ImageOrientationPatient])
    expected = np.concatenate([volume.direction[:, 0], volume.direction[:, 1]])
    if not np.allclose(orientation, expected, atol=ORIENTATION_ATOL):
        raise SegError(f"frame {index + 1} is oriented differently from the source series")
