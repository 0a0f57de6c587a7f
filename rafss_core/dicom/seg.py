"""Label map <-> DICOM-SEG (highdicom).

``write_seg`` encodes a label map aligned with a ``LoadedSeries`` (volume z order) as a
Segmentation instance:

* BINARY by default, LABELMAP (Label Map Segmentation Storage) as an option;
* one SegmentDescription per label: SNOMED category and type codes, a CIELab display colour;
  segment numbers are 1..N in ascending label value (DICOM requires consecutive numbers);
* AUTOMATIC algorithm identification naming the model ids and the reference-set version;
* references to every source instance (ReferencedSeriesSequence included, which OHIF needs),
  even when empty frames are omitted;
* SeriesDescription marking it as an AI pre-segmentation, not for diagnosis;
* SeriesInstanceUID and SOPInstanceUID derived from the job key, so a re-run of the same job
  replaces the SEG instead of duplicating it.

``read_seg`` decodes a SEG (BINARY, LABELMAP or FRACTIONAL) back onto its source series: a
``(Z, Y, X)`` label map in the series' z order, valued by segment number, or by the task's label
values when the task's ``SegmentSpec`` list is given (matched by property type code, then name).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from rafss_core.dicom.errors import SegError
from rafss_core.dicom.seg_geometry import masks_by_geometry
from rafss_core.dicom.series import LoadedSeries

if TYPE_CHECKING:
    from rafss_core.segmentation.pipeline import LabelMap

log = logging.getLogger(__name__)

SegType = Literal["BINARY", "LABELMAP"]

SERIES_DESCRIPTION = "RAFSS AI pre-segmentation - not for diagnosis"
CONTENT_DESCRIPTION = "RAFSS AI pre-segmentation: review before use; not for diagnosis"
CONTENT_LABEL = "RAFSS_AI"
SEG_SERIES_NUMBER = 9901
_UID_NAMESPACE = "urn:rafss:seg:v1"


def _software_version() -> str:
    try:
        return version("rafss")
    except PackageNotFoundError:
        return "0+unknown"


# --------------------------------------------------------------------------------------------
# Segment and algorithm descriptions


@dataclass(frozen=True)
class CodeTriplet:
    """A coded concept: (code value, coding scheme designator, code meaning)."""

    value: str
    scheme: str
    meaning: str

    def to_coded_concept(self) -> hd.sr.CodedConcept:
        return hd.sr.CodedConcept(self.value, self.scheme, self.meaning)

    @classmethod
    def from_coded(cls, code: object) -> CodeTriplet:
        return cls(
            str(code.value),  # type: ignore[attr-defined]
            str(code.scheme_designator),  # type: ignore[attr-defined]
            str(code.meaning),  # type: ignore[attr-defined]
        )

    def same_concept(self, other: CodeTriplet) -> bool:
        """Equal value and scheme (meanings are free text and may differ)."""
        return (self.value, self.scheme.upper()) == (other.value, other.scheme.upper())


ANATOMICAL_STRUCTURE = CodeTriplet("91723000", "SCT", "Anatomical Structure")
ORGAN = CodeTriplet("91772007", "SCT", "Organ")

# A distinguishable palette for labels without a colour (RGB).
DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190),
)


@dataclass(frozen=True)
class SegmentSpec:
    """One label of a task as it appears in a SEG.

    ``label`` is the value in the label map; ``color`` is RGB 0-255 (None: a default palette
    colour). Unknown anatomy defaults to category 'Anatomical Structure' / type 'Organ'.
    """

    label: int
    name: str
    category: CodeTriplet = ANATOMICAL_STRUCTURE
    type: CodeTriplet = ORGAN
    color: tuple[int, int, int] | None = None

    def rgb(self) -> tuple[int, int, int]:
        if self.color is not None:
            return self.color
        return DEFAULT_COLOURS[(self.label - 1) % len(DEFAULT_COLOURS)]


@dataclass(frozen=True)
class AlgorithmInfo:
    """What produced the SEG: RAFSS, its backend, its model ids (each with its checkpoint's
    SHA-256 prefix, e.g. ``litemedsam:79d8c9dca6db``) and the reference-set version."""

    model_ids: Sequence[str]
    reference_set_version: str
    name: str = "RAFSS"
    version: str = field(default_factory=_software_version)
    task: str | None = None
    backend: str | None = None

    @property
    def algorithm_version(self) -> str:
        """AlgorithmVersion (LO, at most 64 characters): full form when it fits."""
        backend = f" {self.backend}" if self.backend else ""
        full = (f"{self.version}{backend} models={'+'.join(self.model_ids)} "
                f"refs={self.reference_set_version}")
        if len(full) <= 64:
            return full
        short = f"{self.version}{backend} refs={self.reference_set_version}"
        return short if len(short) <= 64 else short[:64]

    def parameters(self, job_key: str) -> dict[str, str]:
        """AlgorithmParameters (LT): always carries every model id and the reference set."""
        params = {
            **({"backend": self.backend} if self.backend else {}),
            "models": " ".join(self.model_ids),
            "reference_set_version": self.reference_set_version,
            "job_key": job_key,
        }
        if self.task:
            params["task"] = self.task
        return params

    def to_sequence(self, job_key: str) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.name[:64],
            family=codes.cid7162.ArtificialIntelligence,
            version=self.algorithm_version,
            source="RAFSS",
            parameters=self.parameters(job_key),
        )


def seg_uids(job_key: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG for ``job_key``: 2.25 UIDs, stable."""
    if not job_key:
        raise SegError("job_key is empty: a SEG's UIDs are derived from its job's key")
    return _name_based_uid(job_key, "series"), _name_based_uid(job_key, "instance")


def _name_based_uid(job_key: str, role: str) -> str:
    """``2.25.<int of a name-based (SHA-1, v5) UUID>`` (PS3.5 B.2; at most 44 characters).

    Not ``pydicom.uid.generate_uid(prefix=None, entropy_srcs=...)``: with ``prefix=None`` it
    ignores ``entropy_srcs`` and returns a random UUID.
    """
    name = f"{_UID_NAMESPACE}\x00{role}\x00{job_key}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


# --------------------------------------------------------------------------------------------
# Label map -> SEG


def write_seg(
    labels: np.ndarray | LabelMap,
    source: LoadedSeries,
    segments: Sequence[SegmentSpec],
    algorithm: AlgorithmInfo,
    job_key: str,
    *,
    seg_type: SegType = "BINARY",
    series_number: int = SEG_SERIES_NUMBER,
    series_description: str = SERIES_DESCRIPTION,
    manufacturer: str = "RAFSS",
    manufacturer_model_name: str = "RAFSS",
    device_serial_number: str = "0",
    omit_empty_frames: bool = True,
    transfer_syntax_uid: str = ExplicitVRLittleEndian,
) -> hd.seg.Segmentation:
    """Encode ``labels`` (``(Z, Y, X)`` in ``source``'s z order) as a DICOM-SEG.

    ``segments`` describes every non-zero value of ``labels`` (extra segments may be empty).
    Returns the highdicom ``Segmentation`` (a pydicom ``Dataset``); ``save_as`` writes it.
    """
    array = np.asarray(getattr(labels, "array", labels))
    if array.shape != source.volume.shape:
        raise SegError(
            f"label map shape {array.shape} does not match series "
            f"{source.series_instance_uid} volume {source.volume.shape}"
        )
    seg_type_value = _seg_type(seg_type)
    ordered = _ordered_segments(segments)
    numbers = _to_segment_numbers(array, ordered)
    source_images, pixel_array = _source_and_frames(source, numbers)
    if len(series_description) > 64:
        raise SegError("series_description must be at most 64 characters (LO)")

    series_uid, sop_uid = seg_uids(job_key)
    algorithm_id = algorithm.to_sequence(job_key)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=spec.name[:64],
            segmented_property_category=spec.category.to_coded_concept(),
            segmented_property_type=spec.type.to_coded_concept(),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
            display_color=hd.color.CIELabColor.from_rgb(*spec.rgb()),
        )
        for number, spec in enumerate(ordered, start=1)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=source_images,
            pixel_array=pixel_array,
            segmentation_type=seg_type_value,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name=manufacturer_model_name,
            software_versions=algorithm.version,
            device_serial_number=device_serial_number,
            content_description=CONTENT_DESCRIPTION,
            content_label=CONTENT_LABEL,
            content_creator_name=None,
            transfer_syntax_uid=transfer_syntax_uid,
            omit_empty_frames=omit_empty_frames,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise SegError(
            f"cannot build a SEG for series {source.series_instance_uid}: {exc}"
        ) from exc
    seg.SeriesDescription = series_description
    _ensure_references(seg, source)
    log.info(
        "SEG %s (%s, %d segments) for series %s",
        sop_uid, seg_type_value.value, len(ordered), source.series_instance_uid,
    )
    return seg


def _seg_type(seg_type: str) -> hd.seg.SegmentationTypeValues:
    if seg_type not in ("BINARY", "LABELMAP"):
        raise SegError(f"seg_type must be 'BINARY' or 'LABELMAP', not {seg_type!r}")
    return hd.seg.SegmentationTypeValues(seg_type)


def _ordered_segments(segments: Sequence[SegmentSpec]) -> list[SegmentSpec]:
    if not segments:
        raise SegError("no segments: give one SegmentSpec per label of the task")
    ordered = sorted(segments, key=lambda s: s.label)
    values = [s.label for s in ordered]
    if len(set(values)) != len(values) or values[0] <= 0:
        raise SegError(f"segment label values must be unique and positive; got {values}")
    return ordered


def _to_segment_numbers(array: np.ndarray, ordered: Sequence[SegmentSpec]) -> np.ndarray:
    """Map label values to segment numbers 1..N (0 stays background)."""
    integral = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    if not integral and not np.array_equal(array, np.round(array)):
        raise SegError("label map must hold integer label values")
    array = array.astype(np.int64)
    present = np.unique(array)
    known = {s.label for s in ordered}
    unknown = [int(v) for v in present if v != 0 and v not in known]
    if unknown:
        raise SegError(
            f"label map has value(s) {unknown} without a SegmentSpec; describe every label "
            "of the task (or zero them) before encoding"
        )
    lut = np.zeros(int(max(present.max(), max(known))) + 1, dtype=np.uint16)
    for number, spec in enumerate(ordered, start=1):
        lut[spec.label] = number
    dtype = np.uint8 if len(ordered) < 256 else np.uint16
    return lut[array].astype(dtype)


def _source_and_frames(
    source: LoadedSeries, numbers: np.ndarray
) -> tuple[list[Dataset], np.ndarray]:
    """highdicom's source images and the per-source-frame label array."""
    datasets = source.source_datasets
    if not source.is_multiframe:
        return datasets, numbers
    if len(datasets) != 1:
        raise SegError(
            f"series {source.series_instance_uid} has {len(datasets)} multi-frame instances; "
            "a SEG can reference the frames of one multi-frame instance only"
        )
    by_frame = np.zeros_like(numbers)
    for z, inst in enumerate(source.instances):
        by_frame[int(inst.frame_number or 1) - 1] = numbers[z]
    return datasets, by_frame


def _ensure_references(seg: Dataset, source: LoadedSeries) -> None:
    """Check (and complete) ReferencedSeriesSequence: the source series, every instance."""
    wanted = {inst.sop_instance_uid: inst.sop_class_uid for inst in source.instances}
    refs = seg.get("ReferencedSeriesSequence")
    if not refs:
        item = Dataset()
        item.SeriesInstanceUID = source.series_instance_uid
        item.ReferencedInstanceSequence = []
        seg.ReferencedSeriesSequence = [item]
        refs = seg.ReferencedSeriesSequence
    series_item = next(
        (r for r in refs if r.SeriesInstanceUID == source.series_instance_uid), None
    )
    if series_item is None:
        raise SegError(
            f"SEG references series {[r.SeriesInstanceUID for r in refs]}, "
            f"not the source series {source.series_instance_uid}"
        )
    have = {r.ReferencedSOPInstanceUID for r in series_item.get("ReferencedInstanceSequence", [])}
    for uid, sop_class in wanted.items():
        if uid not in have:
            ref = Dataset()
            ref.ReferencedSOPClassUID = sop_class
            ref.ReferencedSOPInstanceUID = uid
            series_item.ReferencedInstanceSequence.append(ref)


# --------------------------------------------------------------------------------------------
# SEG -> label map


@dataclass(frozen=True)
class DecodedSeg:
    """A SEG decoded onto its source series.

    ``labels`` is ``(Z, Y, X)`` in the source's z order; ``segments`` maps each value in it to
    its description (``SegmentSpec.label`` is that value).
    """

    labels: np.ndarray
    segments: dict[int, SegmentSpec]
    segmentation_type: str
    sop_instance_uid: str
    series_instance_uid: str
    segment_numbers: dict[int, int]  # SEG segment number -> value in ``labels``


def read_seg(
    seg: Dataset | Path | str,
    source: LoadedSeries,
    *,
    segments: Sequence[SegmentSpec] | None = None,
) -> DecodedSeg:
    """Decode a SEG onto ``source`` (the series it segments).

    Without ``segments`` the label values are the SEG's segment numbers. With the task's
    ``segments`` each SEG segment is matched to a task label by segmented property type code,
    then by name (case-insensitive), and the label values are the task's.
    """
    seg_obj = _as_segmentation(seg)
    _check_source(seg_obj, source)
    numbers = [int(n) for n in seg_obj.segment_numbers]
    described = {n: _spec_from_description(seg_obj.get_segment_description(n)) for n in numbers}
    value_of = _match(described, segments) if segments is not None else {n: n for n in numbers}

    onehot = _pixels_by_source(seg_obj, source, numbers)  # (Z, Y, X, S) bool
    overlap = int((onehot.sum(axis=-1) > 1).sum())
    if overlap:
        raise SegError(
            f"SEG {seg_obj.SOPInstanceUID}: segments overlap in {overlap} pixels; a label map "
            "needs disjoint segments (edit the overlapping segments and re-send)"
        )
    dtype = np.uint8 if max(value_of.values(), default=0) < 256 else np.uint16
    labels = np.zeros(onehot.shape[:3], dtype=dtype)
    for i, n in enumerate(numbers):
        labels[onehot[..., i]] = value_of[n]

    out_specs = {
        value_of[n]: SegmentSpec(
            label=value_of[n], name=d.name, category=d.category, type=d.type, color=d.color
        )
        for n, d in described.items()
    }
    return DecodedSeg(
        labels=labels,
        segments=out_specs,
        segmentation_type=str(seg_obj.segmentation_type.value),
        sop_instance_uid=str(seg_obj.SOPInstanceUID),
        series_instance_uid=str(seg_obj.SeriesInstanceUID),
        segment_numbers=value_of,
    )


def _as_segmentation(seg: Dataset | Path | str) -> hd.seg.Segmentation:
    if isinstance(seg, hd.seg.Segmentation):
        return seg
    try:
        if isinstance(seg, (str, Path)):
            return hd.seg.segread(seg)
        return hd.seg.Segmentation.from_dataset(seg, copy=True)
    except (ValueError, AttributeError, KeyError, TypeError, OSError) as exc:
        raise SegError(f"not a readable DICOM Segmentation: {type(exc).__name__}: {exc}") from exc


def _check_source(seg: hd.seg.Segmentation, source: LoadedSeries) -> None:
    referenced = [str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])]
    if referenced and source.series_instance_uid not in referenced:
        raise SegError(
            f"SEG {seg.SOPInstanceUID} segments series {referenced}, not "
            f"{source.series_instance_uid}; load the series it references"
        )
    listed = {str(i.ReferencedSOPInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])
              for i in r.get("ReferencedInstanceSequence", [])}
    missing = listed - set(source.sop_instance_uids)
    if missing:
        raise SegError(
            f"SEG {seg.SOPInstanceUID} references {len(missing)} instance(s) that are not in "
            f"series {source.series_instance_uid}; load the whole series it annotates"
        )
    seg_for = seg.get("FrameOfReferenceUID")
    if seg_for and source.frame_of_reference_uid and seg_for != source.frame_of_reference_uid:
        raise SegError(
            f"SEG {seg.SOPInstanceUID} has FrameOfReferenceUID {seg_for}, the series has "
            f"{source.frame_of_reference_uid}"
        )
    shape = (int(seg.Rows), int(seg.Columns))
    if shape != source.volume.shape[1:]:
        raise SegError(
            f"SEG {seg.SOPInstanceUID} is {shape} (Rows, Columns) but series "
            f"{source.series_instance_uid} is {source.volume.shape[1:]}"
        )


def _pixels_by_source(
    seg: hd.seg.Segmentation, source: LoadedSeries, numbers: Sequence[int]
) -> np.ndarray:
    """``(Z, Y, X, S)`` boolean masks, one channel per segment number, in source z order.

    Frames are placed by their source-image references (as highdicom writes them); a SEG
    without usable references (some viewers and converters) is placed by its plane positions.
    """
    try:
        if source.is_multiframe:
            uids = list(dict.fromkeys(source.sop_instance_uids))
            if len(uids) != 1:
                raise SegError(f"series has {len(uids)} multi-frame instances")
            frames = [int(inst.frame_number or 1) for inst in source.instances]
            pixels = seg.get_pixels_by_source_frame(
                uids[0], source_frame_numbers=frames, segment_numbers=numbers,
                combine_segments=False, dtype=np.float32, assert_missing_frames_are_empty=True,
            )
        else:
            pixels = seg.get_pixels_by_source_instance(
                source.sop_instance_uids, segment_numbers=numbers,
                combine_segments=False, dtype=np.float32, assert_missing_frames_are_empty=True,
            )
    except (ValueError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        log.info(
            "SEG %s: source-image references unusable (%s); placing frames by geometry",
            seg.SOPInstanceUID, type(exc).__name__,
        )
        try:
            return masks_by_geometry(seg, source.volume, numbers)
        except SegError as geometry_error:
            raise SegError(
                f"SEG {seg.SOPInstanceUID} cannot be mapped onto series "
                f"{source.series_instance_uid}: by source-image references: {exc}; "
                f"by geometry: {geometry_error}"
            ) from exc
    return pixels >= 0.5  # binary and label-map masks are 0/1; fractional ones are rescaled


def _spec_from_description(desc: hd.seg.SegmentDescription) -> SegmentSpec:
    color = None
    if "RecommendedDisplayCIELabValue" in desc:
        lab = hd.color.CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue)
        color = tuple(int(c) for c in lab.to_rgb(clip=True))
    return SegmentSpec(
        label=int(desc.segment_number),
        name=str(desc.segment_label),
        category=CodeTriplet.from_coded(desc.segmented_property_category),
        type=CodeTriplet.from_coded(desc.segmented_property_type),
        color=color,  # type: ignore[arg-type]
    )


def _match(
    described: dict[int, SegmentSpec], task: Sequence[SegmentSpec]
) -> dict[int, int]:
    """SEG segment number -> task label value, by type code, then by name."""
    out: dict[int, int] = {}
    unmatched = []
    for number, seg_spec in described.items():
        by_code = [t for t in task if t.type.same_concept(seg_spec.type)]
        if len(by_code) > 1:
            by_code = [t for t in by_code if t.name.casefold() == seg_spec.name.casefold()]
        match = by_code or [t for t in task if t.name.casefold() == seg_spec.name.casefold()]
        if len(match) != 1:
            unmatched.append(f"{number} '{seg_spec.name}' ({seg_spec.type.scheme} "
                             f"{seg_spec.type.value})")
            continue
        out[number] = match[0].label
    if unmatched:
        raise SegError(
            f"SEG segment(s) {', '.join(unmatched)} match no single task label (by type code or "
            "name); add the label to the task or fix the segment's codes"
        )
    values = list(out.values())
    if len(set(values)) != len(values):
        raise SegError(f"several SEG segments map to the same task label: {out}")
    return out


__all__ = [
    "ANATOMICAL_STRUCTURE",
    "ORGAN",
    "SERIES_DESCRIPTION",
    "AlgorithmInfo",
    "CodeTriplet",
    "DecodedSeg",
    "SegmentSpec",
    "read_seg",
    "seg_uids",
    "write_seg",
]
