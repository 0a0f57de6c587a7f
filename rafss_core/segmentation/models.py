"""Model registry: SAM 2 / 2.1 / MedSAM2 and DINOv2 from local files, plus the test preset.

Nothing here downloads weights. Checkpoints are imported from disk with ``rafss models import``,
which records each file's SHA-256 in ``<data_dir>/models/registry.json``; loading verifies the
hash and uses ``torch.load(weights_only=True)`` or safetensors only.

A model spec names the two models, e.g. ``sam2.1-t,dinov2-s``, or a preset: ``tiny-random``
(the SAM 2.1-t architecture at image_size 256 and a small DINOv2, both with seeded random
weights; for tests and benchmarks only, and always labelled as random in outputs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from rafss_core.segmentation.embedder import SliceEmbedder

log = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
TINY_SEED = 0


@dataclass(frozen=True)
class Sam2Arch:
    config: str
    overrides: tuple[str, ...] = ()


SAM2_ARCHS: dict[str, Sam2Arch] = {
    "sam2-t": Sam2Arch("configs/sam2/sam2_hiera_t.yaml"),
    "sam2-s": Sam2Arch("configs/sam2/sam2_hiera_s.yaml"),
    "sam2-b+": Sam2Arch("configs/sam2/sam2_hiera_b+.yaml"),
    "sam2-l": Sam2Arch("configs/sam2/sam2_hiera_l.yaml"),
    "sam2.1-t": Sam2Arch("configs/sam2.1/sam2.1_hiera_t.yaml"),
    "sam2.1-s": Sam2Arch("configs/sam2.1/sam2.1_hiera_s.yaml"),
    "sam2.1-b+": Sam2Arch("configs/sam2.1/sam2.1_hiera_b+.yaml"),
    "sam2.1-l": Sam2Arch("configs/sam2.1/sam2.1_hiera_l.yaml"),
    # MedSAM2 (bowang-lab, 2025) fine-tunes SAM 2.1-t at 512 px (its sam2.1_hiera_t512.yaml).
    "medsam2": Sam2Arch("configs/sam2.1/sam2.1_hiera_t.yaml", ("++model.image_size=512",)),
}

# Hugging Face Dinov2Config fields for the released sizes (patch 14, 518 px position grid).
DINOV2_ARCHS: dict[str, dict[str, Any]] = {
    "dinov2-s": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "dinov2-b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "dinov2-l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "dinov2-g": {"hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
                 "use_swiglu_ffn": True},
}
DINOV2_COMMON: dict[str, Any] = {"image_size": 518, "patch_size": 14, "layerscale_value": 1e-5}
TINY_DINOV2: dict[str, Any] = {
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 2,
    "image_size": 112, "patch_size": 14,
}


class ModelNotFoundError(FileNotFoundError):
    """A model in the spec has no imported checkpoint."""


class ModelSpecError(ValueError):
    """The model spec cannot be parsed."""


# --------------------------------------------------------------------------------------------
# Spec and registry


@dataclass(frozen=True)
class ModelSpec:
    sam: str
    dino: str

    @property
    def is_random(self) -> bool:
        return self.sam == TINY_RANDOM

    def __str__(self) -> str:
        return TINY_RANDOM if self.is_random else f"{self.sam},{self.dino}"

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        if text == TINY_RANDOM:
            return cls(TINY_RANDOM, TINY_RANDOM)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        sams = [p for p in parts if p in SAM2_ARCHS]
        dinos = [p for p in parts if p in DINOV2_ARCHS]
        if len(parts) != 2 or len(sams) != 1 or len(dinos) != 1:
            raise ModelSpecError(
                f"model spec {text!r} must be 'tiny-random' or 'SAM,DINO' with SAM one of "
                f"{sorted(SAM2_ARCHS)} and DINO one of {sorted(DINOV2_ARCHS)}"
            )
        return cls(sams[0], dinos[0])


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelRegistry:
    """Imported checkpoints: ``<models_dir>/registry.json`` plus the copied files."""

    root: Path
    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path) -> ModelRegistry:
        path = root / "registry.json"
        entries = json.loads(path.read_text()) if path.exists() else {}
        return cls(root, entries)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "registry.json.tmp"
        tmp.write_text(json.dumps(self.entries, indent=2, sort_keys=True))
        tmp.replace(self.root / "registry.json")

    def import_checkpoint(self, model_id: str, source: Path, copy: bool = True) -> dict[str, str]:
        """Record (and by default copy) a checkpoint file or HF folder under ``model_id``."""
        if model_id not in SAM2_ARCHS and model_id not in DINOV2_ARCHS:
            raise ModelSpecError(
                f"unknown model id {model_id!r}; known: {sorted(SAM2_ARCHS) + sorted(DINOV2_ARCHS)}"
            )
        source = source.expanduser().resolve()
        if not source.exists():
            raise FileNotFoundError(f"checkpoint {source} does not exist")
        _check_format(model_id, source)
        target = source
        if copy:
            target = self.root / model_id / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        entry = {
            "path": str(target),
            "sha256": sha256_of(target),
            "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.entries[model_id] = entry
        self.save()
        return entry

    def resolve(self, model_id: str) -> tuple[Path, str]:
        """Path and recorded SHA-256 of an imported model, verified on disk."""
        entry = self.entries.get(model_id)
        if entry is None:
            raise ModelNotFoundError(
                f"model {model_id!r} has no imported checkpoint in {self.root}. Import it from "
                f"disk with: rafss models import {model_id} /path/to/checkpoint"
            )
        path = Path(entry["path"])
        if not path.exists():
            raise ModelNotFoundError(
                f"checkpoint for {model_id!r} is missing at {path}; re-run: "
                f"rafss models import {model_id} /path/to/checkpoint"
            )
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise ModelNotFoundError(
                f"checkpoint for {model_id!r} at {path} changed since import (SHA-256 "
                f"{digest[:12]} != {entry['sha256'][:12]}); re-run: "
                f"rafss models import {model_id} ..."
            )
        return path, digest


def _check_format(model_id: str, source: Path) -> None:
    ok = (".pt", ".pth", ".safetensors")
    if source.is_file() and source.suffix not in ok:
        raise ModelSpecError(f"{source.name}: expected one of {ok} or a Hugging Face folder")
    if source.is_dir() and model_id in SAM2_ARCHS:
        raise ModelSpecError(f"{model_id} takes a .pt checkpoint file, not a folder")


# --------------------------------------------------------------------------------------------
# Loading


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights only: safetensors or ``torch.load(weights_only=True)``; unwraps ``{"model"}``."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def build_sam2(model_id: str, checkpoint: Path | None, device: str = "cpu",
               extra_overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    """The one factory for SAM 2 models (a ``SAM2VideoPredictor``, which is a ``SAM2Base``).

    The video-predictor class with SAM 2's own post-processing overrides is used so that
    RAFSS's batched decoder and SAM 2's public video API run the very same module.
    """
    from sam2.build_sam import build_sam2_video_predictor

    arch = SAM2_ARCHS[model_id]
    model = build_sam2_video_predictor(
        arch.config, ckpt_path=None, device="cpu", mode="eval",
        hydra_overrides_extra=[*arch.overrides, *extra_overrides],
    )
    if checkpoint is not None:
        missing, unexpected = model.load_state_dict(load_state_dict(checkpoint), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{checkpoint.name} does not fit {model_id}: {len(missing)} missing and "
                f"{len(unexpected)} unexpected keys (e.g. {(missing or unexpected)[:3]}); "
                "check the model id given to `rafss models import`"
            )
    return model.to(device).eval()


def dinov2_hub_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torch hub DINOv2 ``.pth`` state dict onto transformers' ``Dinov2Model`` names."""
    if any(k.startswith("register_tokens") for k in sd):
        raise ModelSpecError("DINOv2 with registers is not supported; use the plain dinov2_vit*14")
    out: dict[str, torch.Tensor] = {}
    simple = {
        "cls_token": "embeddings.cls_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block_map = {
        "norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
        "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
        "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "mlp.w3": "mlp.down_proj",
    }
    for key, value in sd.items():
        if key == "mask_token":
            out["embeddings.mask_token"] = value.reshape(1, -1)
            continue
        if key in simple:
            out[simple[key]] = value
            continue
        if not key.startswith("blocks."):
            raise ModelSpecError(f"unexpected key {key!r} in DINOv2 hub checkpoint")
        _, idx, rest = key.split(".", 2)
        prefix = f"encoder.layer.{idx}."
        name, _, kind = rest.rpartition(".")
        if name == "attn.qkv":
            q, k, v = value.chunk(3, dim=0)
            for part, t in zip(("q_proj", "k_proj", "v_proj"), (q, k, v), strict=True):
                out[f"{prefix}attention.{part}.{kind}"] = t
        elif name == "mlp.w12":
            gate, up = value.chunk(2, dim=0)
            out[f"{prefix}mlp.gate_proj.{kind}"] = gate
            out[f"{prefix}mlp.up_proj.{kind}"] = up
        elif rest in block_map:  # ls*.gamma carry no .weight suffix
            out[prefix + block_map[rest]] = value
        elif name in block_map:
            out[f"{prefix}{block_map[name]}.{kind}"] = value
        else:
            raise ModelSpecError(f"unexpected key {key!r} in DINOv2 hub checkpoint")
    return out


# The official DINOv2 (facebookresearch/dinov2) interpolates position embeddings with a scale
# factor of (grid + 0.1) / 37, bicubic, no antialias; transformers' Dinov2Model interpolates to
# a size instead, which moves the CLS token by up to 5e-3 at 224 px. RAFSS replaces the method
# on every DINOv2 it builds, so hub files and Hugging Face folders give the released features.
DINOV2_INTERPOLATE_OFFSET = 0.1
DINOV2_INTERPOLATE_ANTIALIAS = False


def _official_interpolate_pos_encoding(self: Any, embeddings: torch.Tensor, height: int,
                                       width: int) -> torch.Tensor:
    """``DinoVisionTransformer.interpolate_pos_encoding`` of the official code, verbatim maths."""
    import math

    import torch
    import torch.nn.functional as F

    previous_dtype = embeddings.dtype
    npatch = embeddings.shape[1] - 1
    pos_embed = self.position_embeddings.float()
    n = pos_embed.shape[1] - 1
    if npatch == n and width == height:
        return self.position_embeddings
    class_pos_embed, patch_pos_embed = pos_embed[:, :1], pos_embed[:, 1:]
    dim = embeddings.shape[-1]
    patch = self.patch_embeddings.patch_size
    patch = patch[0] if isinstance(patch, tuple | list) else patch
    w0, h0 = width // patch, height // patch
    m = int(math.sqrt(n))
    scale = ((w0 + DINOV2_INTERPOLATE_OFFSET) / m, (h0 + DINOV2_INTERPOLATE_OFFSET) / m)
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=scale,
        mode="bicubic", antialias=DINOV2_INTERPOLATE_ANTIALIAS)
    if tuple(patch_pos_embed.shape[-2:]) != (w0, h0):
        raise ValueError(f"position grid {tuple(patch_pos_embed.shape[-2:])} != {(w0, h0)}")
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos_embed, patch_pos_embed), dim=1).to(previous_dtype)


def with_official_interpolation(model: Any) -> Any:
    """Make a transformers ``Dinov2Model`` interpolate position embeddings as released."""
    import types

    emb = model.embeddings
    emb.interpolate_pos_encoding = types.MethodType(_official_interpolate_pos_encoding, emb)
    return model


def hub_arch(config: dict[str, Any]) -> dict[str, Any]:
    """Official ``DinoVisionTransformer`` constructor arguments -> ``Dinov2Config`` fields."""
    ffn = config.get("ffn_layer", "mlp")
    if ffn not in ("mlp", "swiglu", "swiglufused"):
        raise ModelSpecError(f"DINOv2 ffn_layer {ffn!r} is not supported")
    if config.get("num_register_tokens", 0):
        raise ModelSpecError("DINOv2 with registers is not supported; use the plain dinov2_vit*14")
    return {
        "hidden_size": config["embed_dim"], "num_hidden_layers": config["depth"],
        "num_attention_heads": config["num_heads"], "mlp_ratio": config.get("mlp_ratio", 4),
        "image_size": config.get("img_size", 518), "patch_size": config.get("patch_size", 14),
        "layerscale_value": config.get("init_values", 1e-5),
        "use_swiglu_ffn": ffn != "mlp",
    }


def dinov2_from_hub_state(sd: dict[str, torch.Tensor], arch: dict[str, Any],
                          name: str = "checkpoint") -> torch.nn.Module:
    """A ``Dinov2Model`` (official interpolation) from a torch-hub state dict."""
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(**arch))
    missing, unexpected = model.load_state_dict(dinov2_hub_to_hf(sd), strict=False)
    if missing or unexpected:
        raise ValueError(f"{name} does not fit the DINOv2 architecture: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return with_official_interpolation(model.eval())


def build_dinov2(model_id: str, checkpoint: Path | None, device: str = "cpu") -> torch.nn.Module:
    """DINOv2 as transformers' ``Dinov2Model`` with the official position interpolation:
    an HF folder, a hub ``.pth``, or the tiny preset."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    if model_id == TINY_RANDOM:
        torch.manual_seed(TINY_SEED)
        model = Dinov2Model(Dinov2Config(**TINY_DINOV2))
        return with_official_interpolation(model).to(device).eval()
    if checkpoint is None:
        raise ModelNotFoundError(
            f"{model_id} needs a checkpoint: rafss models import {model_id} PATH")
    if checkpoint.is_dir():
        model = Dinov2Model.from_pretrained(str(checkpoint), local_files_only=True)
        return with_official_interpolation(model).to(device).eval()
    sd = load_state_dict(checkpoint)
    arch = {**DINOV2_COMMON, **DINOV2_ARCHS[model_id]}
    if "pos_embed" in sd:
        return dinov2_from_hub_state(sd, arch, checkpoint.name).to(device)
    model = Dinov2Model(Dinov2Config(**arch))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint.name} does not fit {model_id}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    return with_official_interpolation(model).to(device).eval()


@dataclass
class ModelBundle:
    """The loaded pair of models plus the ids that go into job keys and caches."""

    sam: Any
    dino: Any
    sam_id: str
    dino_id: str
    weights: str  # "random" or "pretrained"
    spec: str

    @property
    def sam_image_size(self) -> int:
        return int(self.sam.image_size)

    def embedder(self, pooling: str = "cls", image_size: int | None = None) -> SliceEmbedder:
        """The slice embedder on this bundle's DINOv2 (224 px unless told; tiny: 112)."""
        from rafss_core.segmentation.embedder import SliceEmbedder

        size = image_size or dino_input_size(self.weights == "random")
        return SliceEmbedder(self.dino, self.dino_id, size, pooling)  # type: ignore[arg-type]


def dino_input_size(random: bool) -> int:
    return int(TINY_DINOV2["image_size"]) if random else 224


TINY_IDS = ("sam2.1-t@256:random-seed0", "dinov2-tiny:random-seed0")


def model_ids(spec: str | ModelSpec, models_dir: Path) -> tuple[str, str]:
    """``(sam_id, dino_id)`` of a spec from the registry, without loading any weights."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.is_random:
        return TINY_IDS
    registry = ModelRegistry.open(models_dir)
    ids = []
    for model_id in (spec.sam, spec.dino):
        entry = registry.entries.get(model_id)
        if entry is None:
            registry.resolve(model_id)  # raises the error that names `rafss models import`
        ids.append(f"{model_id}:{registry.entries[model_id]['sha256'][:12]}")
    return ids[0], ids[1]


def embedder_id(spec: str | ModelSpec, models_dir: Path, pooling: str = "cls") -> str:
    """The vector-space id the spec's embedder produces (matches ``SliceEmbedder.embedder_id``)."""
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    _, dino_id = model_ids(spec, models_dir)
    return f"{dino_id}|{dino_input_size(spec.is_random)}|{pooling}"


def load_models(spec: str | ModelSpec, models_dir: Path | None = None,
                device: str = "cpu") -> ModelBundle:
    """Build both models for a spec. ``tiny-random`` needs no files; others need imports."""
    import torch

    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    if spec.is_random:
        log.warning("model preset tiny-random: RANDOM WEIGHTS, for tests and benchmarks only")
        torch.manual_seed(TINY_SEED)
        sam = build_sam2("sam2.1-t", None, device, ("++model.image_size=256",))
        dino = build_dinov2(TINY_RANDOM, None, device)
        return ModelBundle(sam, dino, *TINY_IDS, "random", str(spec))
    if models_dir is None:
        raise ModelSpecError(f"models {spec}: pass the folder where `rafss models import` "
                             "keeps checkpoints (models_dir)")
    registry = ModelRegistry.open(models_dir)
    sam_path, sam_sha = registry.resolve(spec.sam)
    dino_path, dino_sha = registry.resolve(spec.dino)
    sam = build_sam2(spec.sam, sam_path, device)
    dino = build_dinov2(spec.dino, dino_path, device)
    return ModelBundle(sam, dino, f"{spec.sam}:{sam_sha[:12]}", f"{spec.dino}:{dino_sha[:12]}",
                       "pretrained", str(spec))


# --------------------------------------------------------------------------------------------
# Verification


class ModelVerificationError(ValueError):
    """A checkpoint on disk is not the file that was imported (or bundled)."""


@dataclass(frozen=True)
class ModelFile:
    """A checkpoint a backend loads, with the SHA-256 it must have and how to restore it."""

    model_id: str
    path: Path
    sha256: str
    fix: str  # the command that restores the file

    def check(self) -> str | None:
        """None when the file is intact, else what is wrong and how to fix it."""
        if not self.path.exists():
            return f"{self.model_id}: checkpoint missing at {self.path}; fix: {self.fix}"
        digest = sha256_of(self.path)
        if digest != self.sha256:
            return (f"{self.model_id}: checkpoint at {self.path} has SHA-256 {digest[:12]}, "
                    f"expected {self.sha256[:12]} (changed since import); fix: {self.fix}")
        return None


def registry_file(registry: ModelRegistry, model_id: str) -> ModelFile:
    """The imported checkpoint of ``model_id`` (raises the error that names the import)."""
    entry = registry.entries.get(model_id)
    if entry is None:
        registry.resolve(model_id)
        raise AssertionError  # unreachable: resolve raised
    return ModelFile(model_id, Path(entry["path"]), entry["sha256"],
                     f"rafss models import {model_id} /path/to/the/original/checkpoint")


_VERIFIED: dict[tuple[str, str], tuple[int, int, int]] = {}


def verify_files(files: list[ModelFile], force: bool = False) -> None:
    """Re-hash each file (skipped while its size, mtime and ctime are as last verified).

    Raises
    ------
    ModelVerificationError
        Naming every file that is missing or changed, and the command that fixes it.
    """
    problems = []
    for f in files:
        try:
            st = f.path.stat()
            stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            stamp = None
        key = (str(f.path), f.sha256)
        if not force and stamp is not None and _VERIFIED.get(key) == stamp:
            continue
        problem = f.check()
        if problem:
            _VERIFIED.pop(key, None)
            problems.append(problem)
        elif stamp is not None:
            _VERIFIED[key] = stamp
    if problems:
        raise ModelVerificationError("; ".join(problems))
