from __future__ import annotations

import pickle

import pytest
import torch

from rafss_core.segmentation.models import (
    ModelNotFoundError,
    ModelRegistry,
    ModelSpec,
    ModelSpecError,
    build_dinov2,
    build_sam2,
    dinov2_hub_to_hf,
    load_models,
    load_state_dict,
)


def test_model_spec_parsing():
    assert ModelSpec.parse("tiny-random").is_random
    spec = ModelSpec.parse("dinov2-b, sam2.1-b+")
    assert (spec.sam, spec.dino) == ("sam2.1-b+", "dinov2-b")
    assert str(spec) == "sam2.1-b+,dinov2-b"
    assert ModelSpec.parse("medsam2,dinov2-s").sam == "medsam2"
    for bad in ["sam2.1-t", "sam2.1-t,sam2-t", "sam3,dinov2-s", ""]:
        with pytest.raises(ModelSpecError):
            ModelSpec.parse(bad)


def test_missing_checkpoint_names_the_import_command(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"rafss models import sam2\.1-t"):
        load_models("sam2.1-t,dinov2-s", models_dir=tmp_path)


def test_tiny_random_is_seeded_and_labelled(tiny_models):
    again = load_models("tiny-random")
    assert tiny_models.weights == "random" and "random" in tiny_models.sam_id
    assert tiny_models.sam_image_size == 256
    for a, b in zip(tiny_models.sam.parameters(), again.sam.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(tiny_models.dino.parameters(), again.dino.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sam2_checkpoint_import_verify_and_load(tmp_path, tiny_models):
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny_models.sam.state_dict()}, ckpt)
    registry = ModelRegistry.open(tmp_path / "models")
    entry = registry.import_checkpoint("sam2.1-t", ckpt)
    assert len(entry["sha256"]) == 64
    path, digest = ModelRegistry.open(tmp_path / "models").resolve("sam2.1-t")
    assert digest == entry["sha256"] and path != ckpt  # copied into the registry
    model = build_sam2("sam2.1-t", path, extra_overrides=("++model.image_size=256",))
    for (name, a), b in zip(model.state_dict().items(), tiny_models.sam.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    with path.open("ab") as fh:  # tampering is detected
        fh.write(b"x")
    with pytest.raises(ModelNotFoundError, match="changed since import"):
        registry.resolve("sam2.1-t")


def test_wrong_architecture_is_refused(tmp_path):
    ckpt = tmp_path / "other.pt"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, ckpt)
    with pytest.raises(ValueError, match=r"does not fit sam2\.1-t"):
        build_sam2("sam2.1-t", ckpt)
    with pytest.raises(ModelSpecError, match="unknown model id"):
        ModelRegistry.open(tmp_path).import_checkpoint("sam9", ckpt)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_weights_only_loading_refuses_pickled_code(tmp_path):
    bad = tmp_path / "evil.pt"
    with bad.open("wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(bad)


def _hf_to_hub(sd: dict[str, torch.Tensor], swiglu: bool) -> dict[str, torch.Tensor]:
    """The torch hub naming, written out independently of the code under test."""
    hub = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"].reshape(1, 1, -1),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
    for i in range(n):
        p, b = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            hub[f"{b}attn.qkv.{kind}"] = torch.cat(
                [sd[f"{p}attention.{x}_proj.{kind}"] for x in "qkv"])
            hub[f"{b}attn.proj.{kind}"] = sd[f"{p}attention.o_proj.{kind}"]
            hub[f"{b}norm1.{kind}"] = sd[f"{p}norm1.{kind}"]
            hub[f"{b}norm2.{kind}"] = sd[f"{p}norm2.{kind}"]
            if swiglu:
                hub[f"{b}mlp.w12.{kind}"] = torch.cat(
                    [sd[f"{p}mlp.gate_proj.{kind}"], sd[f"{p}mlp.up_proj.{kind}"]])
                hub[f"{b}mlp.w3.{kind}"] = sd[f"{p}mlp.down_proj.{kind}"]
            else:
                hub[f"{b}mlp.fc1.{kind}"] = sd[f"{p}mlp.fc1.{kind}"]
                hub[f"{b}mlp.fc2.{kind}"] = sd[f"{p}mlp.fc2.{kind}"]
        hub[f"{b}ls1.gamma"] = sd[f"{p}layer_scale1.lambda1"]
        hub[f"{b}ls2.gamma"] = sd[f"{p}layer_scale2.lambda1"]
    return hub


@pytest.mark.parametrize("swiglu", [False, True])
def test_dinov2_hub_checkpoint_maps_onto_transformers(swiglu):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(3)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       image_size=56, use_swiglu_ffn=swiglu)
    source = Dinov2Model(cfg).eval()
    hub = _hf_to_hub(source.state_dict(), swiglu)
    target = Dinov2Model(cfg).eval()
    target.load_state_dict(dinov2_hub_to_hf(hub), strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        assert torch.allclose(source(pixel_values=x).pooler_output,
                              target(pixel_values=x).pooler_output, atol=1e-6)


def test_dinov2_hub_file_loads_through_the_registry(tmp_path):
    """A hub .pth for a released size is mapped when loaded (dinov2-s architecture)."""
    from transformers import Dinov2Config, Dinov2Model

    from rafss_core.segmentation.models import DINOV2_ARCHS, DINOV2_COMMON

    torch.manual_seed(4)
    src = Dinov2Model(Dinov2Config(**DINOV2_COMMON, **DINOV2_ARCHS["dinov2-s"])).eval()
    ckpt = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(_hf_to_hub(src.state_dict(), False), ckpt)
    loaded = build_dinov2("dinov2-s", ckpt)
    for (name, a), b in zip(loaded.state_dict().items(), src.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
