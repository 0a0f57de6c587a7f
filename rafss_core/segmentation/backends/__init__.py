"""The registry of segmentation backends: one entry per :class:`Segmenter` implementation.

As ``sam2``'s ``build_sam.py`` does for its models, each entry carries its own builder; callers
never construct a backend themselves, they call :func:`build_segmenter`. Adding a backend is one
module in this package and one entry in :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rafss_core.segmentation import litemedsam
from rafss_core.segmentation.backends import litemedsam_box, sam2_memory
from rafss_core.segmentation.models import (
    DINOV2_ARCHS,
    SAM2_ARCHS,
    TINY_RANDOM,
    ModelFile,
    ModelRegistry,
    ModelSpecError,
    verify_files,
)
from rafss_core.segmentation.segmenter import BuildContext, Segmenter, SegmenterIds

AUTO = "auto"


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    default_models: str
    ids: Callable[[str, Path], SegmenterIds]  # from the registry, without loading weights
    files: Callable[[str, Path], list[ModelFile]]  # the checkpoints it loads
    build: Callable[[str, BuildContext], Segmenter]


BACKENDS: dict[str, Backend] = {
    sam2_memory.NAME: Backend(
        sam2_memory.NAME, "DINOv2 retrieval + SAM 2 memory attention (the paper's method)",
        TINY_RANDOM, sam2_memory.ids, sam2_memory.files, sam2_memory.build),
    litemedsam_box.NAME: Backend(
        litemedsam_box.NAME, "LiteMedSAM (bundled real weights), boxes from retrieved masks",
        litemedsam.LITEMEDSAM, litemedsam_box.ids, litemedsam_box.files,
        litemedsam_box.build),
}

# Preference when `auto` picks an imported SAM 2: SAM 2.1 before SAM 2, base+ first.
SAM2_PREFERENCE = ("sam2.1-b+", "sam2.1-l", "sam2.1-s", "sam2.1-t", "medsam2",
                   "sam2-b+", "sam2-l", "sam2-s", "sam2-t")
DINOV2_PREFERENCE = ("dinov2-b", "dinov2-l", "dinov2-s", "dinov2-g")


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ModelSpecError(f"unknown backend {name!r}; known: {sorted(BACKENDS)} or {AUTO!r}")
    return BACKENDS[name]


def backend_of_models(models: str) -> str:
    """The backend a model spec belongs to (``litemedsam...`` or a SAM 2 spec)."""
    first = models.split(",")[0].strip()
    return litemedsam_box.NAME if first == litemedsam.LITEMEDSAM else sam2_memory.NAME


def choose(name: str | None, models: str | None, models_dir: Path) -> tuple[str, str]:
    """``(backend, models)`` from what the user gave; ``auto`` (or nothing) means: the given
    models' backend, else ``sam2-memory`` when a SAM 2 and a DINOv2 are imported, else
    ``litemedsam-box`` (real weights, no import needed)."""
    name = name or AUTO
    if name != AUTO:
        return name, models or backend(name).default_models
    if models:
        return backend_of_models(models), models
    imported = ModelRegistry.open(models_dir).entries
    sam = next((m for m in SAM2_PREFERENCE if m in imported and m in SAM2_ARCHS), None)
    dino = next((m for m in DINOV2_PREFERENCE if m in imported and m in DINOV2_ARCHS), None)
    if sam and dino:
        return sam2_memory.NAME, f"{sam},{dino}"
    return litemedsam_box.NAME, litemedsam.LITEMEDSAM


def segmenter_ids(name: str, models: str, models_dir: Path) -> SegmenterIds:
    """Validate a (backend, models) pair and return its ids, loading no weights."""
    if backend_of_models(models) != backend_of_models(backend(name).default_models):
        raise ModelSpecError(f"model spec {models!r} does not belong to backend {name!r}")
    return backend(name).ids(models, models_dir)


def build_segmenter(name: str, models: str, ctx: BuildContext) -> Segmenter:
    """The one factory: a loaded segmenter for a (backend, models) pair, its checkpoints
    verified first."""
    segmenter_ids(name, models, ctx.models_dir)
    verify_models(name, models, ctx.models_dir)
    return backend(name).build(models, ctx)


def verify_models(name: str, models: str, models_dir: Path, force: bool = False) -> list[ModelFile]:
    """Re-hash every checkpoint the (backend, models) pair loads; raises
    :class:`~rafss_core.segmentation.models.ModelVerificationError` naming the fix."""
    files = backend(name).files(models, models_dir)
    verify_files(files, force=force)
    return files
