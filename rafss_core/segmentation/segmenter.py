"""The ``Segmenter`` protocol: one segmentation backend behind one interface.

A backend turns a :class:`~rafss_core.segmentation.volume.Volume` and a
:class:`~rafss_core.segmentation.retrieval.ReferenceLibrary` into a
:class:`~rafss_core.segmentation.pipeline.LabelMap` with per-slice confidence. Everything that
varies between backends (how slices are embedded for retrieval, what is precomputed for
references, how a slice is decoded) lives behind this protocol, so the worker, curation,
``rafss eval`` and ``rafss segment`` call every backend the same way. The registry of backends
is :mod:`rafss_core.segmentation.backends`: a new backend is one module and one entry there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from rafss_core.segmentation.pipeline import LabelMap, SegmentOptions
    from rafss_core.segmentation.retrieval import ReferenceLibrary, ReferenceSlice
    from rafss_core.segmentation.volume import IntensityProfile, Volume

Weights = Literal["random", "pretrained"]


@dataclass(frozen=True)
class SegmenterIds:
    """What identifies a backend's output: it goes into job keys and the SEG's algorithm
    identification. ``model_ids`` carry each checkpoint's SHA-256 prefix."""

    backend: str
    models: str  # the model spec as the user gave it, e.g. "litemedsam" or "sam2.1-b+,dinov2-b"
    model_ids: tuple[str, ...]
    embedder_id: str  # the retrieval vector space (model id | input size | pooling)
    weights: Weights

    @property
    def key_parts(self) -> list[str]:
        """The parts of a job's idempotency key that name the segmentation."""
        return [self.backend, *self.model_ids, self.embedder_id]


@dataclass(frozen=True)
class BuildContext:
    """Where a backend finds its files; nothing else of the settings reaches segmentation."""

    models_dir: Path
    device: str = "cpu"  # cpu, cuda or cuda:N (see segmentation/devices.py)
    precision: str = "auto"  # auto, fp32 or bf16
    memories_dir: Path | None = None  # SAM 2 reference memories shared by workers
    cache_dir: Path | None = None  # image-encoder outputs reused across runs (optional)
    batch_size: int | None = None  # None: by device (devices.default_batch_size)
    runtime: str = "auto"  # LiteMedSAM's runtime: auto, torch or openvino (runtimes.py)
    compiled_dir: Path | None = None  # converted models (OpenVINO IR), made once


@runtime_checkable
class Segmenter(Protocol):
    """A segmentation backend with its models loaded."""

    @property
    def ids(self) -> SegmenterIds: ...

    def embed(self, slices: np.ndarray, progress: bool = False) -> np.ndarray:
        """``(N, H, W)`` slices in [0, 1] -> ``(N, dim)`` unit retrieval vectors."""
        ...

    def prepare(self, references: Sequence[ReferenceSlice], labels: Sequence[int],
                progress: bool = False) -> int:
        """Precompute what decoding needs of approved references (e.g. SAM 2 memories);
        returns how many items were prepared (0 when the backend needs nothing)."""
        ...

    def forget(self, references: Sequence[ReferenceSlice], labels: Sequence[int]) -> int:
        """Remove what :meth:`prepare` stored for these references (a revoked reference);
        returns how many items were removed."""
        ...

    def segment(
        self,
        volume: Volume,
        references: ReferenceLibrary,
        labels: Iterable[int] | None = None,
        label_names: dict[int, str] | None = None,
        options: SegmentOptions | None = None,
        embeddings: np.ndarray | None = None,
        profile: IntensityProfile | None = None,
    ) -> LabelMap:
        """Segment every slice from its top-k retrieved references. ``embeddings`` are the
        slices' retrieval vectors when already known (e.g. cached by a worker)."""
        ...
