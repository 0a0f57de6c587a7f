"""Segment NIfTI files from a folder of annotated references: the twin of ``rafss segment``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rafss_core.datasets.nifti import read_volume, write_volume
from rafss_core.segmentation.backends import build_segmenter, choose
from rafss_core.segmentation.pipeline import SegmentOptions, build_library, reference_slices
from rafss_core.segmentation.retrieval import ReferenceSlice
from rafss_core.segmentation.segmenter import BuildContext, Segmenter

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def case_id_of(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[:-5] if name.endswith("_0000") else name


def reference_pairs(images_dir: Path, labels_dir: Path) -> list[tuple[Path, Path]]:
    """Pair ``<case>[_0000].nii.gz`` images with ``<case>.nii.gz`` labels."""
    labels = {case_id_of(p): p for p in labels_dir.iterdir() if p.name.endswith(NIFTI_SUFFIXES)}
    pairs = []
    for image in sorted(images_dir.iterdir()):
        if image.name.endswith(NIFTI_SUFFIXES) and case_id_of(image) in labels:
            pairs.append((image, labels[case_id_of(image)]))
    if not pairs:
        raise FileNotFoundError(
            f"no image/label pairs in {images_dir} and {labels_dir}: name images "
            "<case>_0000.nii.gz (or <case>.nii.gz) and labels <case>.nii.gz"
        )
    return pairs


def segment_files(
    images: list[Path],
    reference_images: Path,
    reference_labels: Path,
    out_dir: Path,
    models: str | None = None,
    k: int = 4,
    modality: str = "MR",
    progress: bool = True,
    backend: str | None = None,
    context: BuildContext | None = None,
    segmenter: Segmenter | None = None,
) -> list[Path]:
    """Write one ``<case>.nii.gz`` label map per input image, on the input's geometry.

    ``backend`` None or ``auto`` picks the backend from ``models`` or from what is imported
    into the context's models folder (default: the settings')."""
    if segmenter is None:
        if context is None:
            from rafss_core.config import Settings

            context = Settings.load().build_context(memories_dir=None, cache_dir=None)
        name, spec = choose(backend, models, context.models_dir)
        segmenter = build_segmenter(name, spec, context)
    refs: list[ReferenceSlice] = []
    for image, label in reference_pairs(reference_images, reference_labels):
        volume = read_volume(image, modality)
        labels = read_volume(label).array.astype(np.int16)
        refs.extend(reference_slices(case_id_of(image), volume, labels))
    library = build_library(refs, segmenter, progress=progress)
    written = []
    for path in images:
        volume = read_volume(path, modality)
        result = segmenter.segment(volume, library,
                                   options=SegmentOptions(k=k, progress=progress))
        written.append(write_volume(result.volume, out_dir / f"{case_id_of(path)}.nii.gz"))
        log.info("wrote %s (%d slices)", written[-1].name, volume.num_slices)
    return written
