"""DINOv2 slice embeddings, batched and L2-normalised."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rafss_core.segmentation.volume import image_to_model

Pooling = Literal["cls", "cls+mean"]


@dataclass
class SliceEmbedder:
    """Turns ``(N, H, W)`` slices in [0, 1] into ``(N, dim)`` unit vectors.

    ``pooling="cls"`` uses the final CLS token; ``"cls+mean"`` concatenates the CLS token and
    the mean patch token (the DINOv2 linear-probe recipe), doubling ``dim``.
    """

    model: Any  # transformers Dinov2Model
    model_id: str
    image_size: int = 224
    pooling: Pooling = "cls"
    batch_size: int = 32

    @property
    def dim(self) -> int:
        hidden = int(self.model.config.hidden_size)
        return hidden * (2 if self.pooling == "cls+mean" else 1)

    @property
    def embedder_id(self) -> str:
        """Identifies the vector space: model, input size and pooling."""
        return f"{self.model_id}|{self.image_size}|{self.pooling}"

    def _batches(self, slices: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(slices), self.batch_size):
            yield slices[start : start + self.batch_size]

    def embed(self, slices: np.ndarray, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm import tqdm

        if slices.ndim != 3:
            raise ValueError(f"expected (N, H, W) slices, got shape {slices.shape}")
        device = next(self.model.parameters()).device
        out: list[np.ndarray] = []
        batches = self._batches(slices)
        if progress:
            total = -(-len(slices) // self.batch_size)
            batches = tqdm(batches, total=total, desc="embed slices", unit="batch")
        with torch.inference_mode():
            for batch in batches:
                x = image_to_model(batch, self.image_size, device)
                tokens = self.model(pixel_values=x).last_hidden_state
                cls = tokens[:, 0]
                feats = torch.cat([cls, tokens[:, 1:].mean(dim=1)], dim=1) \
                    if self.pooling == "cls+mean" else cls
                feats = torch.nn.functional.normalize(feats.float(), dim=1)
                out.append(feats.cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)
