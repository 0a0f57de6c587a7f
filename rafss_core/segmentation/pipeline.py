"""``segment(volume, references, models, k=...) -> LabelMap``: retrieval-augmented segmentation.

1. Scale the volume to [0, 1] with its modality's intensity profile.
2. Embed every slice with DINOv2 and retrieve the top-k reference slices per target slice.
3. Build (or reuse) SAM 2 memories for each retrieved (reference slice, label).
4. Decode all (target slice, label) pairs in batches; combine labels by per-pixel argmax over
   the logits, background where every logit is below 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from rafss_core.segmentation.embedder import SliceEmbedder
from rafss_core.segmentation.memory import (
    DecodeOutput,
    MemoryDecoder,
    ReferenceMemory,
    ReferenceOrder,
)
from rafss_core.segmentation.models import ModelBundle
from rafss_core.segmentation.retrieval import (
    ExactIndex,
    Neighbours,
    ReferenceLibrary,
    ReferenceSlice,
)
from rafss_core.segmentation.segmenter import Segmenter
from rafss_core.segmentation.volume import (
    IntensityProfile,
    Volume,
    logits_to_source,
    normalise,
)

log = logging.getLogger(__name__)

SLICE_CHUNK = 8  # slices whose image features are held at once, unless the batch is larger
LOGITS_BUDGET_BYTES = 512 * 2**20  # a chunk's logits on the source grid, every label


@dataclass
class LabelMap:
    """A label map on its source volume's geometry, with per-slice confidence signals."""

    volume: Volume  # geometry of the source; ``volume.array`` holds the label values
    labels: dict[int, str]
    slice_similarity: np.ndarray  # (Z,) best retrieval cosine similarity per slice
    object_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (Z, L)
    embeddings: np.ndarray | None = None  # (Z, dim) retrieval vectors of the slices

    @property
    def array(self) -> np.ndarray:
        return self.volume.array


@dataclass
class SegmentOptions:
    k: int = 4
    order: ReferenceOrder = "nearest"
    propagate: bool = False  # previous target slice as a non-conditioning memory
    slice_chunk: int | None = None  # slices whose features are held at once (None: by batch)
    progress: bool = False


def reference_slices(
    case_id: str, volume: Volume, labels: np.ndarray, profile: IntensityProfile | None = None
) -> list[ReferenceSlice]:
    """Every slice of an annotated volume as a reference (empty slices included)."""
    if labels.shape != volume.shape:
        raise ValueError(f"{case_id}: labels {labels.shape} != image {volume.shape}")
    image = normalise(volume, profile)
    spacing = tuple(reversed(volume.spacing))
    return [
        ReferenceSlice(f"{case_id}#{z}", image[z], labels[z].astype(np.int16), case_id, z,
                       spacing)  # type: ignore[arg-type]
        for z in range(volume.num_slices)
    ]


def build_library(slices: Sequence[ReferenceSlice], embedder: SliceEmbedder | Segmenter,
                  progress: bool = False) -> ReferenceLibrary:
    """Embed reference slices (with a DINOv2 embedder or a backend's own ``embed``) into an
    exact in-memory index."""
    if not slices:
        raise ValueError("no reference slices: import and approve references first")
    # each slice is embedded at its own shape (the embedder resizes to its input size itself)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(slices):
        by_shape.setdefault(s.image.shape, []).append(i)
    emb: np.ndarray | None = None
    for idx in by_shape.values():
        part = embedder.embed(np.stack([slices[i].image for i in idx]), progress=progress)
        if emb is None:
            emb = np.zeros((len(slices), part.shape[1]), dtype=np.float32)
        emb[idx] = part
    return ReferenceLibrary({s.key: s for s in slices}, ExactIndex([s.key for s in slices], emb))


def label_values(library: ReferenceLibrary, labels: Iterable[int] | None) -> list[int]:
    if labels is not None:
        values = sorted({int(v) for v in labels if int(v) != 0})
    else:
        found = {int(v) for s in library.slices.values() for v in np.unique(s.labels)}
        values = sorted(found - {0})
    if not values:
        raise ValueError("no foreground labels in the references")
    return values


def segment(
    volume: Volume,
    references: ReferenceLibrary,
    models: ModelBundle,
    k: int = 4,
    labels: Iterable[int] | None = None,
    label_names: dict[int, str] | None = None,
    options: SegmentOptions | None = None,
    decoder: MemoryDecoder | None = None,
    embedder: SliceEmbedder | None = None,
    profile: IntensityProfile | None = None,
    embeddings: np.ndarray | None = None,
) -> LabelMap:
    """Segment every slice of ``volume`` from its top-k retrieved references.

    ``embeddings`` are the slices' precomputed embeddings (e.g. cached by a worker); without
    them the slices are embedded here.
    """
    import torch
    from tqdm import tqdm

    opts = options or SegmentOptions(k=k)
    embedder = embedder or models.embedder()
    decoder = decoder or MemoryDecoder(models.sam, models.sam_id)
    values = label_values(references, labels)
    slices = normalise(volume, profile)
    if embeddings is None:
        embeddings = embedder.embed(slices, progress=opts.progress)
    if len(embeddings) != len(slices):
        raise ValueError(f"{len(embeddings)} embeddings for {len(slices)} slices")
    neighbours = references.index.search(embeddings, opts.k)

    memories = _memories(decoder, references, neighbours, values)
    z_count, h, w = slices.shape
    n_labels = len(values)
    device = decoder.device
    label_map = np.zeros((z_count, h, w), dtype=np.uint16)
    scores = torch.zeros((z_count * n_labels,), dtype=torch.float32, device=device)
    lut = torch.as_tensor(values, dtype=torch.int32, device=device)
    chunk_size = opts.slice_chunk or slice_chunk(decoder.batch_size, n_labels, h, w)

    bar = tqdm(total=z_count, desc="segment slices", unit="slice", disable=not opts.progress)
    previous = None
    for start in range(0, z_count, chunk_size):
        zs = list(range(start, min(start + chunk_size, z_count)))
        # this chunk's logits on the source grid, (slice, label) flattened; stays on the device
        logits = torch.empty((len(zs) * n_labels, h, w), dtype=torch.float32, device=device)

        def take(out: DecodeOutput, pairs: Sequence[tuple[int, int]],
                 logits: torch.Tensor = logits, start: int = start) -> None:
            rows = torch.as_tensor([(z - start) * n_labels + li for z, li in pairs],
                                   device=device)
            logits[rows] = logits_to_source(out.low_res_logits.float(), (h, w))[:, 0]
            scores[rows + start * n_labels] = out.object_scores.float()

        feats = decoder.image_features(slices[zs])
        if opts.propagate:  # sequential in z, batched over labels
            for local, z in enumerate(zs):
                pairs = [(z, li) for li in range(n_labels)]
                mems = [[memories[(key, values[li])] for key in neighbours.keys[z]]
                        for _, li in pairs]
                out = decoder.decode(feats, [local] * len(pairs), mems, opts.order,
                                     previous=previous, keep_memory=True)
                previous = out.step_outputs
                take(out, pairs)
                bar.update(1)
        else:
            pairs = [(z, li) for z in zs for li in range(n_labels)]
            for b in range(0, len(pairs), decoder.batch_size):
                chunk = pairs[b : b + decoder.batch_size]
                mems = [[memories[(key, values[li])] for key in neighbours.keys[z]]
                        for z, li in chunk]
                take(decoder.decode(feats, [z - start for z, _ in chunk], mems, opts.order),
                     chunk)
            bar.update(len(zs))
        merged = merge_labels(logits.view(len(zs), n_labels, h, w), lut)
        label_map[start : start + len(zs)] = merged.cpu().numpy().astype(np.uint16)
    bar.close()
    names = {v: (label_names or {}).get(v, str(v)) for v in values}
    return LabelMap(volume.with_array(label_map), names, neighbours.best_similarity,
                    scores.view(z_count, n_labels).cpu().numpy(), embeddings)


def slice_chunk(batch_size: int, n_labels: int, height: int, width: int) -> int:
    """Slices decoded per chunk: at least a decode batch's worth, and no more than keeps the
    chunk's source-grid logits (every label, float32) within ``LOGITS_BUDGET_BYTES``, so a
    series with many labels stays bounded (100 labels at 512 x 512: 5 slices)."""
    by_memory = LOGITS_BUDGET_BYTES // (4 * n_labels * height * width)
    return max(1, min(max(SLICE_CHUNK, batch_size), by_memory))


def merge_labels(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-pixel argmax over labels: ``(Z, L, H, W)`` logits -> ``(Z, H, W)`` label values.

    A pixel takes ``values[l]`` for the label with the highest logit (ties keep the first
    label) when that logit is >= 0, and background (0) where every logit is below 0.
    """
    import torch

    best, index = logits.max(dim=1)
    return torch.where(best >= 0, values[index], torch.zeros_like(index, dtype=values.dtype))


def _memories(decoder: MemoryDecoder, library: ReferenceLibrary, neighbours: Neighbours,
              values: Sequence[int]) -> dict[tuple[str, int], ReferenceMemory]:
    keys = sorted({key for row in neighbours.keys for key in row})
    refs = [library.slices[key] for key in keys]
    out: dict[tuple[str, int], ReferenceMemory] = {}
    # group by shape so each encoder batch is one array
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, ref in enumerate(refs):
        by_shape.setdefault(ref.image.shape, []).append(i)
    for idx in by_shape.values():
        images = np.stack([refs[i].image for i in idx])
        masks = np.stack([[refs[i].labels == v for i in idx] for v in values])
        for v, mems in zip(values, decoder.label_memories(images, masks), strict=True):
            for i, mem in zip(idx, mems, strict=True):
                out[(keys[i], v)] = mem
    return out


def label_transfer(
    volume: Volume,
    references: ReferenceLibrary,
    embeddings: np.ndarray,
    label_names: dict[int, str] | None = None,
) -> LabelMap:
    """Baseline: copy the top-1 retrieved reference's labels onto each target slice.

    ``embeddings`` are the target slices' retrieval vectors from the same backend, so the
    baseline and the backend retrieve the same references.
    """
    import torch
    import torch.nn.functional as F

    neighbours = references.index.search(embeddings, 1)
    z_count, h, w = volume.shape
    out = np.zeros((z_count, h, w), dtype=np.uint16)
    for z, row in enumerate(neighbours.keys):
        ref = references.slices[row[0]].labels
        t = torch.as_tensor(ref.astype(np.float32))[None, None]
        out[z] = F.interpolate(t, size=(h, w), mode="nearest-exact")[0, 0].numpy()
    values = label_values(references, None)
    names = {v: (label_names or {}).get(v, str(v)) for v in values}
    return LabelMap(volume.with_array(out), names, neighbours.best_similarity,
                    embeddings=embeddings)
