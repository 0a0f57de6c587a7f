"""SAM 2 reference memories and memory-conditioned decoding, batched.

This drives SAM 2's own modules (``track_step``, ``_encode_new_memory``) exactly the way
``SAM2VideoPredictor`` does when it is given masks on frames ``0..k-1`` and propagates to
frame ``k`` (see DESIGN.md §4), but:

* target slices and labels are decoded together in batches, each batch element carrying its
  own ``k`` reference memories;
* image features are computed once per slice and reused for every label;
* reference memories are cached by (model id, content hash) in a :class:`MemoryBank`.

Reference frames ``0..k-1`` are all conditioning frames (temporal position 0). In SAM 2.1 the
object pointers carry the signed frame distance, so the order matters: ``order="nearest"``
places the most similar reference at frame ``k-1``, next to the target.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rafss_core.segmentation.devices import Precision, compute_context, default_batch_size
from rafss_core.segmentation.volume import image_to_model, mask_to_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ReferenceOrder = Literal["nearest", "farthest"]


@dataclass(frozen=True)
class ReferenceMemory:
    """One (reference slice, label) memory: what SAM 2 keeps for a conditioning frame."""

    maskmem_features: torch.Tensor  # (1, C_mem, h, w), bfloat16 as SAM 2 stores it
    obj_ptr: torch.Tensor  # (1, C)
    object_score_logits: torch.Tensor  # (1, 1); < 0 means "label absent on this reference"


@dataclass
class ImageFeatures:
    """SAM 2 backbone features for N slices, flattened as SAM 2 uses them: (HW, N, C).

    The position encodings depend only on the grid, so one copy, (HW, 1, C), serves every
    slice; batches get it expanded (a view). At 1024 px that saves 88 MB per slice held and the
    same per batch element decoded.
    """

    vision_feats: list[torch.Tensor]
    vision_pos_embeds: list[torch.Tensor]  # (HW, 1, C): the same for every slice
    feat_sizes: list[tuple[int, int]]

    def take(self, index: Sequence[int]) -> tuple[list, list, list]:
        """Features of the slices ``index`` (repeats allowed), position encodings expanded."""
        import torch

        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.vision_feats[0].device)
        feats = [f.index_select(1, idx) for f in self.vision_feats]
        return feats, self._pos(len(idx)), self.feat_sizes

    def every(self) -> tuple[list, list, list]:
        """Features of all N slices, position encodings expanded."""
        return self.vision_feats, self._pos(self.vision_feats[0].shape[1]), self.feat_sizes

    def _pos(self, batch: int) -> list[torch.Tensor]:
        return [p.expand(-1, batch, -1) for p in self.vision_pos_embeds]


def content_key(model_id: str, image: np.ndarray, mask: np.ndarray) -> str:
    """Cache key of a reference memory: model id + hash of the image and binary mask."""
    h = hashlib.sha256(model_id.encode())
    for a in (np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask, bool)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class MemoryBank:
    """LRU cache of reference memories, optionally backed by a folder of safetensors files.

    In memory: bfloat16 spatial memory, 0.5 MB each at 1024 px. On disk (``directory``): the
    same tensors, written when a memory is first built (e.g. when a reference is approved), so
    memories survive restarts and are shared by every worker on the same data directory.
    Memories read from the folder are loaded onto ``device`` (the decoder's, set by
    :class:`MemoryDecoder`), so they stay resident there and no batch copies them again.
    """

    def __init__(self, capacity: int = 4096, directory: Path | None = None,
                 device: str | None = None) -> None:
        self.capacity = capacity
        self.directory = directory
        self.device = device
        self._items: OrderedDict[str, ReferenceMemory] = OrderedDict()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        path = self._path(key)
        return key in self._items or (path is not None and path.exists())

    def get(self, key: str) -> ReferenceMemory | None:
        mem = self._items.get(key)
        if mem is None:
            mem = self._load(key)
            if mem is None:
                self.misses += 1
                return None
            self.disk_hits += 1
            self._remember(key, mem)
            return mem
        self.hits += 1
        self._items.move_to_end(key)
        return mem

    def forget(self, key: str) -> bool:
        """Drop a memory from the cache and its folder; True when something was removed."""
        found = self._items.pop(key, None) is not None
        path = self._path(key)
        if path is not None and path.exists():
            path.unlink(missing_ok=True)
            found = True
        return found

    def put(self, key: str, memory: ReferenceMemory) -> None:
        self._remember(key, memory)
        path = self._path(key)
        if path is not None and not path.exists():
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            save_file({"maskmem_features": memory.maskmem_features.contiguous(),
                       "obj_ptr": memory.obj_ptr.contiguous(),
                       "object_score_logits": memory.object_score_logits.contiguous()},
                      str(tmp))
            tmp.replace(path)

    def _remember(self, key: str, memory: ReferenceMemory) -> None:
        self._items[key] = memory
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def _load(self, key: str) -> ReferenceMemory | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        from safetensors.torch import load_file

        try:
            t = load_file(str(path), device=self.device or "cpu")
            return ReferenceMemory(t["maskmem_features"], t["obj_ptr"], t["object_score_logits"])
        except Exception:
            log.warning("unreadable memory file %s: rebuilding it", path.name)
            path.unlink(missing_ok=True)
            return None


@cache
def _hole_filling_available() -> bool:
    try:
        from sam2 import _C  # noqa: F401  (SAM 2's CUDA connected-components kernel)
    except ImportError:
        log.info("sam2._C is not built: SAM 2 hole filling is skipped, as SAM 2 itself does")
        return False
    return True


def _fill_holes(model: Any, low_res_masks: torch.Tensor) -> torch.Tensor:
    """SAM 2's own small-hole filling, applied where SAM 2's predictor applies it."""
    area = int(getattr(model, "fill_hole_area", 0))
    if area <= 0 or not _hole_filling_available():
        return low_res_masks
    from sam2.utils.misc import fill_holes_in_mask_scores

    return fill_holes_in_mask_scores(low_res_masks, area)


@dataclass
class DecodeOutput:
    """Low-resolution mask logits (B, 1, s/4, s/4) and object scores (B,) for a batch."""

    low_res_logits: torch.Tensor
    object_scores: torch.Tensor
    step_outputs: dict[str, Any] | None = None  # kept only when propagation needs it


class MemoryDecoder:
    """Reference memories and memory-conditioned decoding on one SAM 2 model, on the model's
    device.

    ``batch_size`` is both the encoder batch (slices) and the decode batch ((slice, label)
    pairs); None picks :func:`~rafss_core.segmentation.devices.default_batch_size`.
    ``precision="bf16"`` runs target encoding and decoding under bf16 autocast; reference
    memories are always built in fp32 (see :mod:`rafss_core.segmentation.devices`).
    """

    def __init__(self, sam: Any, model_id: str, bank: MemoryBank | None = None,
                 batch_size: int | None = None, precision: Precision = "fp32") -> None:
        self.sam = sam
        self.model_id = model_id
        self.bank = bank if bank is not None else MemoryBank()
        if self.bank.device is None:
            self.bank.device = str(self.device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.precision = precision
        self._maskmem_pos_enc: list[torch.Tensor] | None = None

    @property
    def image_size(self) -> int:
        return int(self.sam.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    # ---------------------------------------------------------------- image features

    def image_features(self, slices: np.ndarray, reference: bool = False) -> ImageFeatures:
        """Backbone features for ``(N, H, W)`` slices in [0, 1], batched, at the decoder's
        precision (``reference=True``: always fp32, for reference memories)."""
        import torch

        precision: Precision = "fp32" if reference else self.precision
        parts: list[tuple[list, list, list]] = []
        with torch.inference_mode(), compute_context(self.device, precision):
            for start in range(0, len(slices), self.batch_size):
                x = image_to_model(slices[start : start + self.batch_size], self.image_size,
                                   self.device)
                backbone_out = self.sam.forward_image(x)
                _, feats, pos, sizes = self.sam._prepare_backbone_features(backbone_out)
                parts.append((feats, pos, sizes))
        levels = len(parts[0][0])
        return ImageFeatures(
            vision_feats=[torch.cat([p[0][i] for p in parts], dim=1) for i in range(levels)],
            vision_pos_embeds=[p[:, :1].clone() for p in parts[0][1]],  # not a view: frees the rest
            feat_sizes=parts[0][2],
        )

    # ---------------------------------------------------------------- reference memories

    def reference_memories(
        self, images: np.ndarray, masks: np.ndarray
    ) -> list[ReferenceMemory]:
        """Memories for ``(R, H, W)`` reference images with one ``(R, H, W)`` binary mask each."""
        return self.label_memories(images, masks[None])[0]

    def label_memories(
        self, images: np.ndarray, label_masks: np.ndarray
    ) -> list[list[ReferenceMemory]]:
        """Memories ``[label][reference]`` for ``(R, H, W)`` images and ``(L, R, H, W)`` masks.

        An empty mask is kept: it encodes "object absent" and suppresses false positives.
        Cached memories are reused; each missing reference runs the image encoder once for
        all of its labels.
        """
        n_labels, n_refs = label_masks.shape[:2]
        if n_refs != len(images):
            raise ValueError(f"{n_refs} masks per label for {len(images)} reference images")
        keys = [[content_key(self.model_id, images[r], label_masks[li, r])
                 for r in range(n_refs)] for li in range(n_labels)]
        found: dict[tuple[int, int], ReferenceMemory] = {}
        for li, row in enumerate(keys):
            for r, key in enumerate(row):
                mem = self.bank.get(key)
                if mem is not None:
                    found[(li, r)] = mem
        missing = [r for r in range(n_refs) if any((li, r) not in found
                                                     for li in range(n_labels))]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            feats = self.image_features(images[chunk], reference=True)
            for li in range(n_labels):
                memories = self._encode_references(feats, label_masks[li, chunk])
                for r, mem in zip(chunk, memories, strict=True):
                    self.bank.put(keys[li][r], mem)
                    found[(li, r)] = mem
        return [[found[(li, r)] for r in range(n_refs)] for li in range(n_labels)]

    def _encode_references(self, feats: ImageFeatures, masks: np.ndarray) -> list[ReferenceMemory]:
        import torch
        import torch.nn.functional as F

        sam = self.sam
        with torch.inference_mode(), compute_context(self.device, "fp32"):
            mask_inputs = mask_to_model(masks.astype(np.float32), self.image_size).to(self.device)
            # 1) the mask is the output (use_mask_input_as_output_without_sam), as add_new_mask
            vision_feats, vision_pos, feat_sizes = feats.every()
            out = sam.track_step(
                frame_idx=0, is_init_cond_frame=True,
                current_vision_feats=vision_feats,
                current_vision_pos_embeds=vision_pos,
                feat_sizes=feat_sizes, point_inputs=None, mask_inputs=mask_inputs,
                output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                num_frames=1, run_mem_encoder=False,
            )
            # 2) the memory encoder on the consolidated low-res mask, as propagate_in_video
            low_res = _fill_holes(sam, out["pred_masks"])
            high_res = F.interpolate(low_res, size=(self.image_size, self.image_size),
                                     mode="bilinear", align_corners=False)
            maskmem, pos_enc = sam._encode_new_memory(
                current_vision_feats=feats.vision_feats, feat_sizes=feats.feat_sizes,
                pred_masks_high_res=high_res,
                object_score_logits=out["object_score_logits"], is_mask_from_pts=True,
            )
            if self._maskmem_pos_enc is None:  # identical for every frame and object
                self._maskmem_pos_enc = [p[0:1].clone() for p in pos_enc]
            maskmem = maskmem.to(torch.bfloat16)
        return [
            ReferenceMemory(maskmem[i : i + 1], out["obj_ptr"][i : i + 1],
                            out["object_score_logits"][i : i + 1])
            for i in range(len(masks))
        ]

    # ---------------------------------------------------------------- target decoding

    def decode(
        self,
        features: ImageFeatures,
        target_index: Sequence[int],
        memories: Sequence[Sequence[ReferenceMemory]],
        order: ReferenceOrder = "nearest",
        previous: dict[str, Any] | None = None,
        keep_memory: bool = False,
    ) -> DecodeOutput:
        """Decode a batch: element ``b`` is target slice ``target_index[b]`` conditioned on
        ``memories[b]`` (most similar first; all of equal length ``k``).

        ``previous`` is the step output of the previous target slice for the same batch
        elements; it becomes a non-conditioning memory one frame before the target
        (inter-slice propagation). ``keep_memory`` encodes this step's own memory for that.
        """
        import torch

        sam = self.sam
        k = len(memories[0])
        if any(len(m) != k for m in memories) or k == 0:
            raise ValueError("every batch element needs the same, non-zero number of references")
        if self._maskmem_pos_enc is None:  # all memories came from disk
            with torch.inference_mode():
                feats = memories[0][0].maskmem_features.float()
                self._maskmem_pos_enc = [sam.memory_encoder.position_encoding(feats)[0:1]]
        batch = len(target_index)
        ranks = range(k)
        # frame index of each rank: 'nearest' puts rank 0 (most similar) at k-1, next to target
        frame_of = {r: (k - 1 - r if order == "nearest" else r) for r in ranks}
        pos_enc = [p.expand(batch, -1, -1, -1) for p in self._maskmem_pos_enc]
        cond = {
            frame_of[r]: {
                "maskmem_features": torch.cat([m[r].maskmem_features for m in memories]),
                "maskmem_pos_enc": pos_enc,
                "obj_ptr": torch.cat([m[r].obj_ptr for m in memories]),
                "object_score_logits": torch.cat([m[r].object_score_logits for m in memories]),
            }
            for r in ranks
        }
        non_cond: dict[int, Any] = {}
        frame_idx, num_frames = k, k + 1
        if previous is not None:
            non_cond[k] = previous
            frame_idx, num_frames = k + 1, k + 2
        feats, pos, sizes = features.take(target_index)
        with torch.inference_mode(), compute_context(self.device, self.precision):
            out = sam.track_step(
                frame_idx=frame_idx, is_init_cond_frame=False,
                current_vision_feats=feats, current_vision_pos_embeds=pos, feat_sizes=sizes,
                point_inputs=None, mask_inputs=None,
                output_dict={"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond},
                num_frames=num_frames, run_mem_encoder=keep_memory,
            )
            low_res = _fill_holes(sam, out["pred_masks"])
        step = None
        if keep_memory:
            step = {
                "maskmem_features": out["maskmem_features"].to(torch.bfloat16),
                "maskmem_pos_enc": pos_enc,
                "obj_ptr": out["obj_ptr"],
                "object_score_logits": out["object_score_logits"],
            }
        return DecodeOutput(low_res, out["object_score_logits"].reshape(-1), step)
