"""Curation helpers: label codes, task creation, and reading annotated volumes from files.

The use cases that store and review references are in :mod:`rafss_core.app.references`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from rafss_core.segmentation.backends import choose, segmenter_ids
from rafss_core.segmentation.volume import Volume
from rafss_core.store.models import Label, Task
from rafss_core.store.repositories import LabelSpec, create_task
from rafss_core.store.repositories.tasks import task_by_name

__all__ = ["AnnotatedVolume", "dicom_volume", "new_task", "nifti_volumes", "parse_label",
           "task_by_name", "task_segments"]

# Default codes for well-known label names (SNOMED CT); anything else gets a generic code.
ANATOMY = ("SCT", "123037004", "Anatomical Structure")
KNOWN_TYPES: dict[str, tuple[str, str, str]] = {
    "LV": ("SCT", "32547003", "Left ventricle cavity"),
    "RV": ("SCT", "71836000", "Right ventricle cavity"),
    "MYO": ("SCT", "74281007", "Myocardium"),
    "LIVER": ("SCT", "10200004", "Liver"),
    "SPLEEN": ("SCT", "78961009", "Spleen"),
    "KIDNEY": ("SCT", "64033007", "Kidney"),
    "PANCREAS": ("SCT", "15776009", "Pancreas"),
    "LUNG": ("SCT", "39607008", "Lung"),
    "HEART": ("SCT", "80891009", "Heart"),
    "AORTA": ("SCT", "15825003", "Aorta"),
}
GENERIC_TYPE = ("SCT", "91723000", "Anatomical Structure")
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#46f0f0",
           "#f032e6", "#bcf60c", "#fabebe"]


def parse_label(text: str, index: int) -> LabelSpec:
    """``NUMBER:NAME`` or ``NUMBER:NAME:SCHEME:CODE`` (the code's meaning is the name)."""
    parts = text.split(":")
    if len(parts) not in (2, 4) or not parts[0].isdigit() or not parts[1]:
        raise ValueError(f"label {text!r}: use NUMBER:NAME or NUMBER:NAME:SCHEME:CODE")
    number, name = int(parts[0]), parts[1]
    kind = KNOWN_TYPES.get(name.upper(), GENERIC_TYPE)
    if len(parts) == 4:
        kind = (parts[2], parts[3], name)
    return LabelSpec(number, name, category=ANATOMY, type=kind,
                     colour_rgb=PALETTE[index % len(PALETTE)])


def new_task(session: Session, name: str, modality: str, labels: Sequence[str],
             models: str | None, models_dir: Path, k: int = 4, actor: str = "cli",
             backend: str | None = None, min_similarity: float = 0.0) -> Task:
    """Create a task; ``backend`` None or ``auto`` picks it from ``models`` or from what is
    imported (see :func:`rafss_core.segmentation.backends.choose`)."""
    specs = [parse_label(text, i) for i, text in enumerate(labels)]
    name_, models = choose(backend, models, models_dir)
    ids = segmenter_ids(name_, models, models_dir)
    return create_task(session, name=name, modality=modality.upper(), labels=specs,
                       embedder_id=ids.embedder_id, segmenter_id=models, backend=name_,
                       k=k, actor=actor, min_similarity=min_similarity)


def task_segments(labels: Sequence[Label]) -> list[Any]:
    """A task's labels as DICOM-SEG segment descriptions."""
    from rafss_core.dicom.seg import CodeTriplet, SegmentSpec

    return [
        SegmentSpec(
            label=lab.number, name=lab.name,
            category=CodeTriplet(lab.category_value, lab.category_scheme, lab.category_meaning),
            type=CodeTriplet(lab.type_value, lab.type_scheme, lab.type_meaning),
            color=(int(lab.colour_rgb[1:3], 16), int(lab.colour_rgb[3:5], 16),
                   int(lab.colour_rgb[5:7], 16)))
        for lab in labels
    ]


@dataclass(frozen=True)
class AnnotatedVolume:
    """A volume plus label map and, per slice, where it came from."""

    volume: Volume
    labels: np.ndarray
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    seg_uid: str | None = None


def nifti_pair(image: Path, label: Path, modality: str, case: str) -> AnnotatedVolume:
    """An image and its label map as NIfTI; UIDs derive from ``case`` (NIfTI has none)."""
    from pydicom.uid import generate_uid

    from rafss_core.datasets.nifti import read_volume

    try:
        volume = read_volume(image, modality)
    except Exception as exc:
        raise ValueError(f"the image is not a readable NIfTI file ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    try:
        label_volume = read_volume(label)
    except Exception as exc:
        raise ValueError(f"the label is not a readable NIfTI file ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    if label_volume.shape != volume.shape:
        raise ValueError(f"image {volume.shape} and label {label_volume.shape} differ in "
                         "geometry: they must be the same grid")
    if not np.allclose(label_volume.spacing, volume.spacing, rtol=1e-3, atol=1e-3):
        raise ValueError(f"image spacing {tuple(volume.spacing)} and label spacing "
                         f"{tuple(label_volume.spacing)} differ: they must be the same grid")
    series = generate_uid(prefix=None, entropy_srcs=["nifti-series", case])
    return AnnotatedVolume(
        volume, np.rint(label_volume.array).astype(np.int16),
        generate_uid(prefix=None, entropy_srcs=["nifti-study", case]), series,
        [generate_uid(prefix=None, entropy_srcs=[series, str(z)])
         for z in range(volume.num_slices)])


def dicom_pair(series_files: Sequence[Path], seg_file: Path,
               segments: Sequence[Any] | None) -> AnnotatedVolume:
    """A DICOM series and a SEG that annotates it, matched to the task's labels."""
    from rafss_core.dicom.seg import read_seg
    from rafss_core.dicom.series import load_series

    if not series_files:
        raise ValueError("no image instances: send the series the SEG annotates")
    try:
        loaded = load_series(list(series_files))
    except Exception as exc:
        raise ValueError(f"the series cannot be loaded ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    try:
        decoded = read_seg(seg_file, loaded, segments=segments)
    except Exception as exc:
        raise ValueError(f"the SEG does not fit the series or the task ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    return AnnotatedVolume(loaded.volume, decoded.labels, loaded.study_instance_uid,
                           loaded.series_instance_uid, loaded.sop_instance_uids,
                           decoded.sop_instance_uid)


def nifti_volumes(images_dir: Path, labels_dir: Path, cases: Sequence[str] | None,
                  modality: str) -> list[AnnotatedVolume]:
    """NIfTI pairs of a dataset folder (see :func:`nifti_pair`)."""
    from rafss_core.predict import case_id_of, reference_pairs

    out = []
    for image, label in reference_pairs(images_dir, labels_dir):
        case = case_id_of(image)
        if cases and case not in cases and case.split("_")[0] not in cases:
            continue
        out.append(nifti_pair(image, label, modality, case))
    if cases and not out:
        raise FileNotFoundError(f"none of the cases {list(cases)} found in {images_dir}")
    return out


def dicom_volume(dicom_dir: Path, seg_file: Path, segments: Sequence[Any] | None = None
                 ) -> AnnotatedVolume:
    """A DICOM series folder plus a DICOM-SEG that annotates it (see :func:`dicom_pair`)."""
    return dicom_pair(sorted(p for p in dicom_dir.rglob("*") if p.is_file()), seg_file,
                      segments)
