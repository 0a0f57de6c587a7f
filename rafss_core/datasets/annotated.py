"""Annotated volumes read from files: NIfTI image + label pairs, or a DICOM series + SEG.

What the reference imports embed (see :mod:`rafss_core.app.references`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rafss_core.segmentation.volume import Volume

__all__ = ["AnnotatedVolume", "dicom_pair", "dicom_volume", "nifti_pair", "nifti_volumes"]


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
    _check_uids({"StudyInstanceUID": [loaded.study_instance_uid],
                 "SeriesInstanceUID": [loaded.series_instance_uid],
                 "SOPInstanceUID": loaded.sop_instance_uids,
                 "the SEG's SOPInstanceUID": [decoded.sop_instance_uid]})
    return AnnotatedVolume(loaded.volume, decoded.labels, loaded.study_instance_uid,
                           loaded.series_instance_uid, loaded.sop_instance_uids,
                           decoded.sop_instance_uid)


def _check_uids(uids: dict[str, Sequence[str]]) -> None:
    """UIDs from files are stored and sent on: refuse one that is not a DICOM UID (NUL bytes,
    letters, over 64 characters) before anything is staged."""
    from pydicom.uid import UID

    bad = [name for name, values in uids.items() if not all(UID(v).is_valid for v in values)]
    if bad:
        raise ValueError(f"{', '.join(bad)} of the upload is not a valid DICOM UID (digits and "
                         "dots, at most 64 characters): fix the files and upload again")


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
