"""LiteMedSAM's runtimes (segmentation/runtimes.py): OpenVINO, the CPU default, against the
torch network it is converted from, with the real bundled weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rafss_core.segmentation import litemedsam as lms
from rafss_core.segmentation import runtimes
from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.pipeline import SegmentOptions, build_library, reference_slices
from rafss_core.segmentation.runtimes import RuntimeChoiceError, build_runtime, resolve_runtime
from rafss_core.segmentation.segmenter import BuildContext
from tests.factories import acdc_case


@pytest.fixture(scope="module")
def net():
    return lms.build_litemedsam()[0]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="module")
def openvino(net, compiled):
    return build_runtime(net, lms.LITEMEDSAM_SHA256, "openvino", "fp32", compiled_dir=compiled)


def _scene() -> tuple[np.ndarray, torch.Tensor]:
    yy, xx = np.mgrid[:180, :200]
    rng = np.random.default_rng(3)
    images = np.stack([0.1 + 0.7 * (np.hypot(yy - 90, xx - c) < 30) + rng.normal(0, 0.03, yy.shape)
                       for c in (70, 100, 130)]).astype(np.float32)
    boxes = torch.tensor([[c - 35.0, 55.0, c + 35.0, 125.0] for c in (70, 100, 130)])
    return images, boxes * lms.Frame(180, 200).scale


def test_auto_is_openvino_on_the_cpu_and_torch_elsewhere(monkeypatch):
    """Runtime and precision resolution; refusals name the fix."""
    assert resolve_runtime("auto", "cpu") == "openvino"
    assert resolve_runtime("AUTO", "cuda:0") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(RuntimeChoiceError, match="RAFSS_RUNTIME=torch"):
        resolve_runtime("openvino", "cuda")
    with pytest.raises(RuntimeChoiceError, match="auto, torch, openvino"):
        resolve_runtime("onnx", "cpu")
    assert runtimes.resolve_precision("auto", "torch", "cpu") == "fp32"
    assert runtimes.resolve_precision("fp32", "openvino", "cpu") == "fp32"
    monkeypatch.setattr(runtimes, "native_bf16", lambda: True)
    assert runtimes.resolve_precision("auto", "openvino", "cpu") == "bf16"
    monkeypatch.setattr(runtimes, "native_bf16", lambda: False)
    assert runtimes.resolve_precision("auto", "openvino", "cpu") == "fp32"
    monkeypatch.setattr(runtimes, "openvino_available", lambda: False)
    assert resolve_runtime("auto", "cpu") == "torch"
    with pytest.raises(RuntimeChoiceError, match="pip install openvino"):
        resolve_runtime("openvino", "cpu")


def test_openvino_fp32_encodes_and_decodes_as_torch_does(net, openvino):
    """Encodings within 1e-4 relative L2 of torch's, and the same masks from the same boxes,
    dense prompts included."""
    images, boxes = _scene()
    reference, ours = lms.encode(net, images), lms.encode(openvino, images)
    assert ours.shape == reference.shape == (3, 256, 64, 64)
    assert float((ours - reference).norm() / reference.norm()) < 1e-4
    dense = torch.where(lms.masks_to_frame((images > 0.5).astype(np.float32)) > 0.5, 10.0, -10.0)
    want, want_iou = lms.decode(net, reference, boxes, dense)
    got, got_iou = lms.decode(openvino, reference, boxes, dense)
    assert got.shape == want.shape == (3, 1, 256, 256)
    assert torch.allclose(got_iou, want_iou, atol=1e-4)
    assert (want >= 0).sum() > 1000
    assert torch.equal(got >= 0, want >= 0)


def test_bf16_runs_in_bf16_and_stays_close(net, compiled):
    images, _ = _scene()
    bf16 = build_runtime(net, lms.LITEMEDSAM_SHA256, "openvino", "bf16", compiled_dir=compiled)
    reference, ours = lms.encode(net, images[:1]), lms.encode(bf16, images[:1])
    error = float((ours - reference).norm() / reference.norm())
    assert 1e-4 < error < 0.1  # not fp32 in disguise, and still the same encoding


def test_the_converted_model_is_saved_once_and_reused(net, compiled, openvino, monkeypatch):
    """A new process reads the IR from the compiled folder instead of converting again."""
    saved = sorted(p.name for p in compiled.rglob("*.xml"))
    assert saved == ["decoder.xml", "encoder.xml"]
    monkeypatch.setattr(runtimes, "_CONVERTED", {})  # as in a new process

    def refuse(_net):
        raise AssertionError("converted again")

    monkeypatch.setattr(runtimes, "_convert", refuse)
    again = build_runtime(net, lms.LITEMEDSAM_SHA256, "auto", "fp32", compiled_dir=compiled)
    assert again.name == "openvino"
    images, _ = _scene()
    assert torch.allclose(lms.encode(again, images[:1]), lms.encode(openvino, images[:1]))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.data
def test_segment_masks_equal_the_torch_path_on_acdc(tmp_path):
    """The default backend labels a real ACDC study on OpenVINO fp32 as the torch reference
    does (every pixel but near-ties at label borders), and on its default precision (bf16
    where the CPU has it) within the Dice tolerance chosen on val."""
    volume, truth = acdc_case("patient001_frame01")
    refs = reference_slices("patient003_frame01", *acdc_case("patient003_frame01"))
    maps, used = {}, {}
    for runtime, precision in (("torch", "fp32"), ("openvino", "fp32"), ("auto", "auto")):
        segmenter = build_segmenter("litemedsam-box", "litemedsam",
                                    BuildContext(tmp_path, runtime=runtime, precision=precision))
        used[runtime] = (segmenter.net.name, segmenter.net.precision)
        library = build_library(refs, segmenter)
        maps[runtime] = segmenter.segment(volume, library, labels=[1, 2, 3],
                                          options=SegmentOptions(k=2)).array
    default = "bf16" if runtimes.native_bf16() else "fp32"
    assert used == {"torch": ("torch", "fp32"), "openvino": ("openvino", "fp32"),
                    "auto": ("openvino", default)}
    assert (truth > 0).any() and (maps["torch"] > 0).sum() > 1000
    agreement = float((maps["torch"] == maps["openvino"]).mean())
    assert agreement > 0.9995, agreement
    for label in (1, 2, 3):
        assert _dice(maps["auto"] == label, maps["torch"] == label) > 0.95, label


@pytest.mark.data
def test_services_cache_reference_encodings_not_the_studies(tmp_path):
    """The encoding cache holds what approval encoded (the references); a study segmented in
    the service leaves nothing behind, while an evaluation (``cache_targets``) keeps its
    queries for the next run."""
    refs = reference_slices("patient003_frame01", *acdc_case("patient003_frame01"))
    volume, _ = acdc_case("patient001_frame01")
    segmenter = build_segmenter("litemedsam-box", "litemedsam",
                                BuildContext(tmp_path, cache_dir=tmp_path / "encodings"))
    library = build_library(refs, segmenter)
    assert segmenter.prepare(refs, [1, 2, 3]) == len(refs)
    encoded = len(list((tmp_path / "encodings").rglob("*.npy")))
    assert encoded == len(refs)
    segmenter.segment(volume, library, labels=[1, 2, 3], options=SegmentOptions(k=2))
    assert len(list((tmp_path / "encodings").rglob("*.npy"))) == encoded
    segmenter.cache_targets = True
    segmenter.segment(volume, library, labels=[1, 2, 3], options=SegmentOptions(k=2))
    assert len(list((tmp_path / "encodings").rglob("*.npy"))) == encoded + volume.num_slices
