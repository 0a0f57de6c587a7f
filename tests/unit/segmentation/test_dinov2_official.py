"""DINOv2 exactly as released: RAFSS's import path reproduces the official code's features.

``../shared/fixtures/dinov2_official_tiny.pt`` was made with facebookresearch/dinov2's own
``DinoVisionTransformer`` (see the fixture's README): hub-layout weights, inputs, and the
official ``forward_features`` outputs at 224 px (position embeddings interpolated) and 518 px.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rafss_core.segmentation.models import (
    DINOV2_ARCHS,
    ModelRegistry,
    build_dinov2,
    dinov2_hub_to_hf,
    hub_arch,
)

FIXTURE = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / \
    "dinov2_official_tiny.pt"


@pytest.fixture(scope="module")
def official() -> dict:
    if not FIXTURE.exists():
        pytest.fail(f"fixture missing: {FIXTURE}")
    return torch.load(FIXTURE, weights_only=True)


def _features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        tokens = model(pixel_values=x.float()).last_hidden_state
    return tokens[:, 0], tokens[:, 1:]


@pytest.mark.parametrize("variant", ["mlp", "swiglu"])
def test_hub_file_imported_gives_the_official_features(official, variant, tmp_path,
                                                        monkeypatch):
    case = official["models"][variant]
    # the fixture's tiny architecture, registered like a released size
    monkeypatch.setitem(DINOV2_ARCHS, "dinov2-fixture", hub_arch(case["config"]))
    ckpt = tmp_path / f"dinov2_{variant}_pretrain.pth"
    torch.save(case["state_dict"], ckpt)
    registry = ModelRegistry.open(tmp_path / "models")
    registry.import_checkpoint("dinov2-fixture", ckpt)
    path, _ = registry.resolve("dinov2-fixture")
    model = build_dinov2("dinov2-fixture", path)
    for size in (224, 518):
        cls, patch = _features(model, official["inputs"][size])
        want = case["cases"][size]
        assert torch.allclose(cls, want["cls"], atol=1e-5), (variant, size)
        assert torch.allclose(patch, want["patch"], atol=1e-5), (variant, size)


def test_hugging_face_folder_gives_the_official_features(official, tmp_path, monkeypatch):
    from transformers import Dinov2Config, Dinov2Model

    case = official["models"]["mlp"]
    folder = tmp_path / "dinov2-hf"
    hf = Dinov2Model(Dinov2Config(**hub_arch(case["config"])))
    hf.load_state_dict(dinov2_hub_to_hf(case["state_dict"]), strict=True)
    hf.save_pretrained(str(folder))
    monkeypatch.setitem(DINOV2_ARCHS, "dinov2-fixture", hub_arch(case["config"]))
    registry = ModelRegistry.open(tmp_path / "models")
    registry.import_checkpoint("dinov2-fixture", folder)
    model = build_dinov2("dinov2-fixture", registry.resolve("dinov2-fixture")[0])
    cls, patch = _features(model, official["inputs"][224])
    assert torch.allclose(cls, case["cases"][224]["cls"], atol=1e-5)
    assert torch.allclose(patch, case["cases"][224]["patch"], atol=1e-5)


def test_stock_transformers_interpolation_is_not_the_released_one(official):
    """Why RAFSS replaces the method: without it, 224 px features drift from the official."""
    from transformers import Dinov2Config, Dinov2Model

    case = official["models"]["mlp"]
    stock = Dinov2Model(Dinov2Config(**hub_arch(case["config"]))).eval()
    stock.load_state_dict(dinov2_hub_to_hf(case["state_dict"]), strict=True)
    cls, patch = _features(stock, official["inputs"][224])
    assert (patch - case["cases"][224]["patch"]).abs().max() > 1e-4
    cls, _ = _features(stock, official["inputs"][518])  # no interpolation at 518: identical
    assert torch.allclose(cls, case["cases"][518]["cls"], atol=1e-5)
