"""``sam2-memory``: the paper's method. DINOv2 retrieval, SAM 2 memory attention.

The maths is :func:`rafss_core.segmentation.pipeline.segment` (proven identical to
``SAM2VideoPredictor``); this module only binds it to the :class:`Segmenter` protocol.
Model specs: ``tiny-random`` (tests and benchmarks) or ``SAM,DINO`` (imported checkpoints).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rafss_core.segmentation.devices import resolve_precision, use_device
from rafss_core.segmentation.embedder import SliceEmbedder
from rafss_core.segmentation.memory import MemoryBank, MemoryDecoder
from rafss_core.segmentation.models import (
    ModelBundle,
    ModelFile,
    ModelRegistry,
    ModelSpec,
    embedder_id,
    load_models,
    model_ids,
    registry_file,
)
from rafss_core.segmentation.pipeline import LabelMap, SegmentOptions, segment
from rafss_core.segmentation.retrieval import ReferenceLibrary, ReferenceSlice
from rafss_core.segmentation.segmenter import BuildContext, SegmenterIds
from rafss_core.segmentation.volume import IntensityProfile, Volume

NAME = "sam2-memory"


def ids(models: str, models_dir: Path) -> SegmenterIds:
    """Ids from the registry without loading weights; raises for a model never imported."""
    spec = ModelSpec.parse(models)
    return SegmenterIds(NAME, str(spec), model_ids(spec, models_dir),
                        embedder_id(spec, models_dir), "random" if spec.is_random else
                        "pretrained")


def files(models: str, models_dir: Path) -> list[ModelFile]:
    spec = ModelSpec.parse(models)
    if spec.is_random:
        return []
    registry = ModelRegistry.open(models_dir)
    return [registry_file(registry, spec.sam), registry_file(registry, spec.dino)]


@dataclass
class Sam2MemorySegmenter:
    bundle: ModelBundle
    decoder: MemoryDecoder
    embedder: SliceEmbedder = field(init=False)

    def __post_init__(self) -> None:
        self.embedder = self.bundle.embedder()

    @property
    def ids(self) -> SegmenterIds:
        return SegmenterIds(NAME, self.bundle.spec, (self.bundle.sam_id, self.bundle.dino_id),
                            self.embedder.embedder_id, self.bundle.weights)  # type: ignore[arg-type]

    def embed(self, slices: np.ndarray, progress: bool = False) -> np.ndarray:
        return self.embedder.embed(slices, progress=progress)

    def prepare(self, references: Sequence[ReferenceSlice], labels: Sequence[int],
                progress: bool = False) -> int:
        """SAM 2 memories of every reference slice and label, into the memory bank."""
        from tqdm import tqdm

        count = 0
        by_shape: dict[tuple[int, ...], list[ReferenceSlice]] = {}
        for ref in references:
            by_shape.setdefault(ref.image.shape, []).append(ref)
        for group in tqdm(list(by_shape.values()), desc="reference memories", unit="group",
                          disable=not progress):
            images = np.stack([r.image for r in group])
            masks = np.stack([[r.labels == v for r in group] for v in labels])
            count += sum(len(row) for row in self.decoder.label_memories(images, masks))
        return count

    def forget(self, references: Sequence[ReferenceSlice], labels: Sequence[int]) -> int:
        """Drop the memories of these references (every label) from the bank and its folder."""
        from rafss_core.segmentation.memory import content_key

        model_id = self.decoder.model_id
        return sum(self.decoder.bank.forget(content_key(model_id, r.image, r.labels == v))
                   for r in references for v in labels)

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
        from rafss_core.segmentation.volume import normalise

        if embeddings is None:  # returned with the label map so callers can cache them
            embeddings = self.embed(normalise(volume, profile),
                                    progress=bool(options and options.progress))
        return segment(volume, references, self.bundle, labels=labels, label_names=label_names,
                       options=options, decoder=self.decoder, embedder=self.embedder,
                       profile=profile, embeddings=embeddings)


def build(models: str, ctx: BuildContext) -> Sam2MemorySegmenter:
    device = use_device(ctx.device)
    bundle = load_models(models, ctx.models_dir, str(device))
    bank = MemoryBank(directory=ctx.memories_dir)  # the decoder puts it on its device
    decoder = MemoryDecoder(bundle.sam, bundle.sam_id, bank, batch_size=ctx.batch_size,
                            precision=resolve_precision(ctx.precision, device))
    return Sam2MemorySegmenter(bundle, decoder)
