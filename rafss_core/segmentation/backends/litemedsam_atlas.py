"""``litemedsam-atlas``: registered reference volumes prompt LiteMedSAM.

Retrieval still chooses the references (the paper's idea): every target slice retrieves its
top-k reference slices, and each retrieved slice votes for the annotated volume it came from.
The ``atlases`` most voted reference volumes are then registered onto the whole target volume
(:mod:`rafss_core.segmentation.registration`: rotation search about the slice normal, affine by
mutual information, demons), so each target slice gets one warped label map per reference
that is consistent along z. Those warped maps replace ``litemedsam-box``'s shifted retrieved
slices as the prompt source: presence by majority vote, the median box, the mean mask as a
dense prompt, and nested labels (a ring is its filled outline minus what it encloses, grown
by the references' ring thickness).

Confidence: per slice, ``registration_quality`` is the mean NCC of the warped references
with the target on that slice. Registrations that fail (optimiser error, a collapsed or
exploded affine, labels leaving the image, NCC below the threshold) are dropped; when none
succeeds, or the references carry no volume, the volume falls back to ``litemedsam-box`` and
every slice is listed in ``fallback_slices``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rafss_core.segmentation import litemedsam as lms
from rafss_core.segmentation.backends import litemedsam_box as box
from rafss_core.segmentation.pipeline import LabelMap, SegmentOptions, label_values
from rafss_core.segmentation.registration import (
    Registered,
    RegistrationParams,
    register,
    slice_similarity,
)
from rafss_core.segmentation.retrieval import ReferenceLibrary
from rafss_core.segmentation.segmenter import BuildContext, SegmenterIds
from rafss_core.segmentation.volume import IntensityProfile, Volume, normalise

log = logging.getLogger(__name__)

NAME = "litemedsam-atlas"
ATLASES = 3  # reference volumes registered per target (chosen on ACDC val; see README)


def ids(models: str, models_dir: Path) -> SegmenterIds:
    base = box.ids(models, models_dir)
    return SegmenterIds(NAME, base.models, base.model_ids, base.embedder_id, base.weights)


files = box.files


@dataclass
class LiteMedSamAtlasSegmenter(box.LiteMedSamBoxSegmenter):
    atlases: int = ATLASES
    registration: RegistrationParams = field(default_factory=RegistrationParams)
    # evaluations keep registrations of (target, reference volume) pairs: the `atlas`
    # baseline and other k reuse them; off in services
    remember_registrations: bool = False
    _registered: dict[tuple[str, str], Registered] = field(default_factory=dict)

    @property
    def ids(self) -> SegmenterIds:
        base = super().ids
        return SegmenterIds(NAME, base.models, base.model_ids, base.embedder_id, base.weights)

    def registered(self, slices: np.ndarray, spacing: tuple[float, ...],
                   references: ReferenceLibrary, stacks: list[str]
                   ) -> list[tuple[str, Registered]]:
        """Each reference volume registered onto the target slices ``(Z, H, W)`` with
        ``spacing`` (mm, per axis). A reference volume of unknown spacing is taken to share
        the target's (the affine absorbs a difference in scale)."""
        target_key = box._content_key(slices) if self.remember_registrations else ""
        out = []
        for stack in stacks:
            if target_key and (target_key, stack) in self._registered:
                out.append((stack, self._registered[(target_key, stack)]))
                continue
            ref = references.stack(stack)
            shapes = {r.image.shape for r in ref}
            if len(ref) == 0 or len(shapes) != 1:
                continue  # no volume to rebuild (revoked slices, mixed shapes)
            reg = register(slices, np.stack([r.image for r in ref]),
                           np.stack([r.labels for r in ref]), spacing,
                           ref[0].spacing or spacing, params=self.registration)
            if not reg.ok:
                log.info("registration of reference volume %s failed: %s", stack, reg.reason)
            if target_key:
                self._registered[(target_key, stack)] = reg
            out.append((stack, reg))
        return out

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
        import torch
        from tqdm import tqdm

        opts = options or SegmentOptions()
        slices = normalise(volume, profile)
        values = label_values(references, labels)
        z_count, h, w = slices.shape
        held = None  # encodings made for retrieval are kept for decoding (float16)
        if embeddings is None and self.dino_embedder is None:
            held = [self.features(slices[i : i + 4]).half() for i in range(0, z_count, 4)]
            embeddings = np.concatenate([lms.pool(f, self.pool_grid).numpy() for f in held])
        elif embeddings is None:
            embeddings = self.embed(slices)
        found = references.index.search(embeddings, opts.k)
        stacks = references.stacks_by_votes(found, self.atlases)
        good = [r for _, r in self.registered(slices, tuple(reversed(volume.spacing)), references,
                                                stacks) if r.ok]
        if not good:
            log.warning("no reference volume could be registered onto the target; "
                        "falling back to %s for every slice", box.NAME)
            result = super().segment(volume, references, labels, label_names, opts,
                                     embeddings, profile)
            result.fallback_slices = list(range(z_count))
            return result

        label_map = np.zeros((z_count, h, w), dtype=np.uint16)
        scores = np.full((z_count, len(values)), box.ABSENT, dtype=np.float32)
        quality = np.mean([slice_similarity(r.image, slices, r.labels) for r in good], axis=0)
        bar = tqdm(total=z_count, desc="segment slices", unit="slice", disable=not opts.progress)
        chunk_size = opts.slice_chunk or box.SLICE_CHUNK
        for start in range(0, z_count, chunk_size):
            zs = list(range(start, min(start + chunk_size, z_count)))
            warped_present = [z for z in zs if any(r.labels[z].any() for r in good)]
            if not warped_present:
                bar.update(len(zs))
                continue
            feats = (self.features(slices[warped_present]) if held is None else
                     torch.stack([held[z // 4][z % 4] for z in warped_present]).float())
            for local, z in enumerate(warped_present):
                refs = [lms.labels_to_frame(r.labels[z]) for r in good]
                logits, scores[z] = self._frame_logits(feats[local : local + 1], refs, values,
                                                       refs)
                label_map[z] = box._merge(logits, (h, w))
            bar.update(len(zs))
        bar.close()
        names = {v: (label_names or {}).get(v, str(v)) for v in values}
        return LabelMap(volume.with_array(label_map), names, found.best_similarity, scores,
                        embeddings, registration_quality=quality.astype(np.float32))


def build(models: str, ctx: BuildContext) -> LiteMedSamAtlasSegmenter:
    base = box.build(models, ctx)
    return LiteMedSamAtlasSegmenter(base.net, base.lite_id, base.dino_embedder, base.cache,
                                    models=models)
