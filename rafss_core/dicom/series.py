"""Spooled DICOM files -> one ``Volume`` (pixels, geometry, slice order).

``load_series(paths)`` accepts the files of one series in any order:

* classic single-frame images (one slice per file), and
* enhanced multi-frame images (Enhanced CT/MR and other IODs with functional groups), whose
  frames are placed by their Plane Position / Plane Orientation / Pixel Measures groups.

Slices are sorted by their position along the slice normal ``cross(row, column)`` of
ImageOrientationPatient, so the volume's direction is right-handed and ``Volume.slice_position``
equals ImagePositionPatient of each slice. The stack must be regular: one orientation, one
size, one pixel spacing, no two slices at the same position, uniform slice spacing and no
shear (gantry tilt). Anything else raises ``SeriesError`` naming what is wrong (by UID, never
by patient data) and what to do next.

Values are float32 after RescaleSlope/RescaleIntercept (per frame for enhanced images), so CT
volumes are in HU. Compressed transfer syntaxes decode through pydicom's pixel plugins (see
``rafss_core.dicom``'s docstring for the non-GPL set RAFSS relies on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from rafss_core.dicom.errors import SeriesError
from rafss_core.segmentation.volume import Volume

log = logging.getLogger(__name__)

ORIENTATION_ATOL = 1e-3  # direction cosines
SPACING_RTOL = 1e-3  # pixel spacing, relative
POSITION_ATOL_MM = 1e-3  # slices closer than this along the normal are duplicates
SLICE_SPACING_RTOL = 0.01  # slice gaps may differ from their mean by 1 % ...
SHEAR_ATOL_MM = 1e-2  # ... and drift off the normal by max(this, 1 % of the gap)


@dataclass(frozen=True)
class SourceInstance:
    """Where one slice of the volume comes from.

    ``dataset`` is the instance's header without PixelData, shared by all frames of a
    multi-frame instance; ``frame_number`` is 1-based for multi-frame instances, else None.
    """

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None
    dataset: Dataset


@dataclass(frozen=True)
class LoadedSeries:
    """A series as a volume plus, per slice (volume z order), the instance it came from."""

    volume: Volume
    instances: list[SourceInstance]
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str | None

    @property
    def source_datasets(self) -> list[Dataset]:
        """Distinct source headers, in the z order of their first slice (for highdicom)."""
        seen: dict[str, Dataset] = {}
        for inst in self.instances:
            seen.setdefault(inst.sop_instance_uid, inst.dataset)
        return list(seen.values())

    @property
    def sop_instance_uids(self) -> list[str]:
        """SOPInstanceUID of each slice, in volume z order (repeats for multi-frame)."""
        return [inst.sop_instance_uid for inst in self.instances]

    @property
    def is_multiframe(self) -> bool:
        return any(inst.frame_number is not None for inst in self.instances)


@dataclass
class _Frame:
    """One 2D frame before sorting: its geometry, and how to get its stored pixels."""

    dataset: Dataset
    frame_index: int | None  # 0-based within a multi-frame instance
    position: np.ndarray  # (3,) LPS mm
    orientation: np.ndarray  # (6,) row cosines then column cosines
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    slice_thickness: float | None
    slope: float
    intercept: float

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def label(self) -> str:
        frame = "" if self.frame_index is None else f" frame {self.frame_index + 1}"
        return f"instance {self.sop_instance_uid}{frame}"


# --------------------------------------------------------------------------------------------
# Public API


def load_series(paths: Sequence[Path | str]) -> LoadedSeries:
    """Read the files of one series (any order) into a ``LoadedSeries``.

    Raises ``SeriesError`` (a ``ValueError``) when the files do not form one regular volume or
    their pixels cannot be decoded.
    """
    if not paths:
        raise SeriesError("no files given: pass the files of one series")
    datasets = [_read(Path(p)) for p in paths]
    _check_one_series(datasets)
    frames = [frame for ds in datasets for frame in _frames(ds)]
    _check_consistent(frames)
    frames, spacing_z = _sort_and_check_stack(frames)

    pixels = _decode_all(datasets)
    array = np.empty((len(frames), *_shape(datasets[0])), dtype=np.float32)
    for z, frame in enumerate(frames):
        stored = pixels[frame.sop_instance_uid]
        plane = stored if frame.frame_index is None else stored[frame.frame_index]
        np.multiply(plane, frame.slope, out=array[z], dtype=np.float32, casting="unsafe")
        if frame.intercept:
            array[z] += np.float32(frame.intercept)

    row, col, normal = _axes(frames[0].orientation)
    row_spacing, col_spacing = frames[0].pixel_spacing
    volume = Volume(
        array=array,
        spacing=(col_spacing, row_spacing, spacing_z),
        origin=tuple(float(v) for v in frames[0].position),  # type: ignore[arg-type]
        direction=np.stack([row, col, normal], axis=1),
        modality=str(datasets[0].get("Modality", "OT") or "OT"),
    )
    headers = {ds.SOPInstanceUID: _header(ds) for ds in datasets}
    instances = [
        SourceInstance(
            sop_class_uid=str(f.dataset.SOPClassUID),
            sop_instance_uid=f.sop_instance_uid,
            frame_number=None if f.frame_index is None else f.frame_index + 1,
            dataset=headers[f.dataset.SOPInstanceUID],
        )
        for f in frames
    ]
    first = datasets[0]
    series = LoadedSeries(
        volume=volume,
        instances=instances,
        series_instance_uid=str(first.SeriesInstanceUID),
        study_instance_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.FrameOfReferenceUID)
        if "FrameOfReferenceUID" in first
        else None,
    )
    log.debug(
        "loaded series %s: %d instances, shape %s, spacing %s",
        series.series_instance_uid, len(datasets), volume.shape, volume.spacing,
    )
    return series


# --------------------------------------------------------------------------------------------
# Reading and geometry


def _read(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError) as exc:
        raise SeriesError(
            f"{path.name}: not a readable DICOM file ({type(exc).__name__}); "
            "remove it from the series or re-send it"
        ) from exc
    missing = [k for k in ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID") if k not in ds]
    if missing:
        raise SeriesError(f"{path.name}: missing {', '.join(missing)}; not a valid instance")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise SeriesError(
            f"instance {ds.SOPInstanceUID} (SOP class {ds.SOPClassUID}) has no pixel data; "
            "only image instances can be loaded into a volume"
        )
    return ds


def _check_one_series(datasets: Sequence[Dataset]) -> None:
    series = sorted({str(ds.SeriesInstanceUID) for ds in datasets})
    if len(series) > 1:
        raise SeriesError(
            f"files belong to {len(series)} series ({', '.join(series)}); load one series at a time"
        )
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    dupes = sorted({u for u in uids if uids.count(u) > 1})
    if dupes:
        raise SeriesError(f"instance(s) given more than once: {', '.join(dupes)}")


def _frames(ds: Dataset) -> list[_Frame]:
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return [_enhanced_frame(ds, i) for i in range(n_frames)]
    if n_frames > 1:
        raise SeriesError(
            f"instance {ds.SOPInstanceUID} (SOP class {ds.SOPClassUID}) has {n_frames} frames but "
            "no per-frame functional groups, so its frames cannot be placed in space"
        )
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if key not in ds:
            raise SeriesError(
                f"instance {ds.SOPInstanceUID} lacks {key}; a volume needs patient geometry "
                "(is this a localizer, secondary capture or report?)"
            )
    return [
        _Frame(
            dataset=ds,
            frame_index=None,
            position=_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", ds),
            orientation=_floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", ds),
            pixel_spacing=tuple(_floats(ds.PixelSpacing, 2, "PixelSpacing", ds)),  # type: ignore[arg-type]
            slice_thickness=_optional_float(ds.get("SliceThickness")),
            slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
            intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        )
    ]


def _enhanced_frame(ds: Dataset, index: int) -> _Frame:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if index >= len(per_frame):
        raise SeriesError(
            f"instance {ds.SOPInstanceUID} has NumberOfFrames {ds.NumberOfFrames} but only "
            f"{len(per_frame)} per-frame functional group items"
        )
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = [per_frame[index], *(shared[:1] if shared else [])]

    def item(sequence: str) -> Dataset | None:
        for group in groups:
            seq = group.get(sequence)
            if seq:
                return seq[0]
        return None

    where = f"instance {ds.SOPInstanceUID} frame {index + 1}"
    position, orientation, measures = (
        item("PlanePositionSequence"),
        item("PlaneOrientationSequence"),
        item("PixelMeasuresSequence"),
    )
    if None in (position, orientation, measures) or "PixelSpacing" not in measures:
        raise SeriesError(
            f"{where} lacks a Plane Position, Plane Orientation or Pixel Measures functional "
            "group, so it cannot be placed in space"
        )
    transform = item("PixelValueTransformationSequence")
    slope = transform.get("RescaleSlope", 1.0) if transform is not None else 1.0
    intercept = transform.get("RescaleIntercept", 0.0) if transform is not None else 0.0
    return _Frame(
        dataset=ds,
        frame_index=index,
        position=_floats(position.get("ImagePositionPatient"), 3, "ImagePositionPatient", ds),
        orientation=_floats(
            orientation.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", ds
        ),
        pixel_spacing=tuple(_floats(measures.PixelSpacing, 2, "PixelSpacing", ds)),  # type: ignore[arg-type]
        slice_thickness=_optional_float(measures.get("SliceThickness")),
        slope=float(slope if slope not in (None, "") else 1.0),
        intercept=float(intercept if intercept not in (None, "") else 0.0),
    )


def _floats(value: object, n: int, name: str, ds: Dataset) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise SeriesError(f"instance {ds.SOPInstanceUID}: {name} is not numeric") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise SeriesError(f"instance {ds.SOPInstanceUID}: {name} must be {n} finite numbers")
    return arr


def _optional_float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _axes(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column and normal vectors, re-orthonormalised (DS values are rounded)."""
    row = orientation[:3] / np.linalg.norm(orientation[:3])
    col = orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    col = np.cross(normal, row)
    return row, col, normal


def _shape(ds: Dataset) -> tuple[int, int]:
    return int(ds.Rows), int(ds.Columns)


def _check_consistent(frames: Sequence[_Frame]) -> None:
    first = frames[0]
    o = first.orientation
    if (
        abs(np.linalg.norm(o[:3]) - 1) > 1e-2
        or abs(np.linalg.norm(o[3:]) - 1) > 1e-2
        or abs(float(np.dot(o[:3], o[3:]))) > 1e-2
    ):
        raise SeriesError(
            f"{first.label}: ImageOrientationPatient is not two orthogonal unit vectors"
        )
    shape = _shape(first.dataset)
    for frame in frames[1:]:
        if not np.allclose(frame.orientation, first.orientation, atol=ORIENTATION_ATOL):
            raise SeriesError(
                f"mixed orientation: {frame.label} has ImageOrientationPatient "
                f"{np.round(frame.orientation, 4).tolist()} but {first.label} has "
                f"{np.round(first.orientation, 4).tolist()}; split the series by orientation"
            )
        if _shape(frame.dataset) != shape:
            raise SeriesError(
                f"mixed size: {frame.label} is {_shape(frame.dataset)} (Rows, Columns) but "
                f"{first.label} is {shape}; all slices of a volume must have one size"
            )
        if not np.allclose(frame.pixel_spacing, first.pixel_spacing, rtol=SPACING_RTOL, atol=0):
            raise SeriesError(
                f"mixed pixel spacing: {frame.label} has PixelSpacing {list(frame.pixel_spacing)} "
                f"but {first.label} has {list(first.pixel_spacing)}; "
                "all slices of a volume must share one pixel spacing"
            )
    for ds in {id(f.dataset): f.dataset for f in frames}.values():
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        if spp != 1:
            raise SeriesError(
                f"instance {ds.SOPInstanceUID} has {spp} samples per pixel; only greyscale "
                "images can be segmented"
            )
    modalities = sorted({str(f.dataset.get("Modality", "")) for f in frames})
    if len(modalities) > 1:
        raise SeriesError(f"mixed modality {modalities} in one series; load one modality")


def _sort_and_check_stack(frames: list[_Frame]) -> tuple[list[_Frame], float]:
    """Sort along the normal; return the frames and the slice spacing (mm)."""
    _, _, normal = _axes(frames[0].orientation)
    along = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    along = along[order]
    if len(frames) == 1:
        only = frames[0]
        ds = only.dataset
        thickness = _optional_float(ds.get("SpacingBetweenSlices")) or only.slice_thickness
        return frames, float(thickness) if thickness and thickness > 0 else 1.0

    gaps = np.diff(along)
    dup = int(np.argmin(gaps))
    if gaps[dup] < POSITION_ATOL_MM:
        raise SeriesError(
            f"duplicate slice position: {frames[dup].label} and {frames[dup + 1].label} lie at "
            f"the same position along the normal ({along[dup]:.3f} mm). A series with several "
            "images per position (cine phases, 4D, multiple echoes or b-values) must be split "
            "into one volume per phase/echo before segmentation"
        )
    mean_gap = float(np.mean(gaps))
    worst = int(np.argmax(np.abs(gaps - mean_gap)))
    if abs(gaps[worst] - mean_gap) > max(SLICE_SPACING_RTOL * mean_gap, POSITION_ATOL_MM):
        raise SeriesError(
            f"non-uniform slice spacing: gap {gaps[worst]:.4f} mm between {frames[worst].label} "
            f"and {frames[worst + 1].label}, mean {mean_gap:.4f} mm (missing or extra slices?); "
            "re-send the complete series"
        )
    offsets = np.stack([f.position for f in frames]) - frames[0].position
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > max(SHEAR_ATOL_MM, SLICE_SPACING_RTOL * mean_gap) * max(worst, 1):
        raise SeriesError(
            f"slices are not stacked along their normal: {frames[worst].label} is offset "
            f"{drift[worst]:.3f} mm in-plane from {frames[0].label} (gantry tilt or sheared "
            "stack); resample the series to an orthogonal grid first"
        )
    return frames, mean_gap


# --------------------------------------------------------------------------------------------
# Pixels


def _decode_all(datasets: Sequence[Dataset]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for ds in datasets:
        arr = _decode(ds)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = (n_frames, *_shape(ds)) if n_frames > 1 else _shape(ds)
        if "PerFrameFunctionalGroupsSequence" in ds and n_frames == 1:
            arr = arr[None]
            expected = (1, *_shape(ds))
        if arr.shape != expected:
            raise SeriesError(
                f"instance {ds.SOPInstanceUID}: decoded pixels have shape {arr.shape}, "
                f"expected {expected}; the instance is malformed, re-send it"
            )
        out[str(ds.SOPInstanceUID)] = arr
    return out


def _decode(ds: Dataset) -> np.ndarray:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        name = getattr(ts, "name", str(ts))
        raise SeriesError(
            f"instance {ds.SOPInstanceUID}: cannot decode transfer syntax {ts} ({name}): "
            f"{_first_line(exc)}. Install a pydicom pixel plugin for it (pillow, pyjpegls, "
            "python-gdcm, pylibjpeg + pylibjpeg-openjpeg) or have the sender use another syntax"
        ) from exc
    except (ValueError, AttributeError, KeyError, EOFError) as exc:
        raise SeriesError(
            f"instance {ds.SOPInstanceUID}: pixel data cannot be decoded "
            f"({type(exc).__name__}: {_first_line(exc)}); the instance is malformed, re-send it"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _header(ds: Dataset) -> Dataset:
    """The dataset without its pixel data (kept for highdicom and for references)."""
    for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if key in ds:
            delattr(ds, key)
    return ds
