"""RAFSS's batched decoder conditions SAM 2 exactly as SAM2VideoPredictor does.

Route A (the peers' route, FS-MedSAM2 / FATE-SAM): ``add_new_mask`` for every label on frames
0..k-1, then ``propagate_in_video`` from frame k. Route B: ``MemoryDecoder`` with the same
references, all labels of the target decoded in one batch.

Tolerance: logits agree within ``atol=1e-5`` (measured: ~2e-7; the routes batch differently,
so float sums are ordered differently; random-weight logits are ~O(0.1)); masks are identical
wherever the video-predictor logit has magnitude above 1e-4 (that band only absorbs
floating-point ties at 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rafss_core.segmentation.memory import MemoryDecoder
from rafss_core.segmentation.peers import video_predictor_logits
from rafss_core.segmentation.volume import logits_to_source

LOGIT_ATOL = 1e-5
TIE_BAND = 1e-4
MARGIN_BAND = 1e-5  # between two labels' logits: 30x the largest logit difference measured


@pytest.mark.parametrize("k", [1, 3])
def test_decoder_matches_sam2_video_predictor(tiny_models, synthetic_case, k):
    sam = tiny_models.sam
    images, label_maps = synthetic_case
    target = images[-1]
    refs = images[:k][::-1]  # rank 0 = most similar, placed nearest the target
    ref_labels = label_maps[:k][::-1]
    labels = [1, 2, 3]

    # Route A: video frames 0..k-1 hold ranks k-1..0 (rank 0 at frame k-1)
    video_logits = video_predictor_logits(sam, refs[::-1], ref_labels[::-1], target, labels)

    # Route B: RAFSS
    dec = MemoryDecoder(sam, tiny_models.sam_id)
    mems = {
        lab: dec.reference_memories(refs, (ref_labels == lab)) for lab in labels
    }
    feats = dec.image_features(target[None])
    out = dec.decode(feats, [0] * len(labels), [mems[lab] for lab in labels], order="nearest")
    ours = logits_to_source(out.low_res_logits, target.shape)[:, 0].float().numpy()

    assert ours.shape == video_logits.shape
    np.testing.assert_allclose(ours, video_logits, atol=LOGIT_ATOL, rtol=0)
    decided = np.abs(video_logits) > TIE_BAND
    assert np.array_equal((ours > 0)[decided], (video_logits > 0)[decided])
    # the check is not vacuous: predictions are non-trivial and logits vary
    assert decided.mean() > 0.99
    assert (video_logits > 0).any() and (video_logits < 0).any()
    print(f"k={k} max |logit diff| = {np.abs(ours - video_logits).max():.2e}")


def test_reference_order_changes_the_result(tiny_models, synthetic_case):
    """Object pointers carry the signed frame distance in SAM 2.1: order is not ignored."""
    images, label_maps = synthetic_case
    dec = MemoryDecoder(tiny_models.sam, tiny_models.sam_id)
    mems = dec.reference_memories(images[:3], label_maps[:3] == 1)
    feats = dec.image_features(images[-1:])
    a = dec.decode(feats, [0], [mems], order="nearest").low_res_logits
    b = dec.decode(feats, [0], [mems], order="farthest").low_res_logits
    assert not torch.allclose(a, b)


def test_memory_bank_reuses_reference_memories(tiny_models, synthetic_case):
    images, label_maps = synthetic_case
    dec = MemoryDecoder(tiny_models.sam, tiny_models.sam_id)
    first = dec.reference_memories(images[:2], label_maps[:2] == 2)
    assert len(dec.bank) == 2
    again = dec.reference_memories(images[:2], label_maps[:2] == 2)
    assert dec.bank.hits >= 2
    assert all(x is y for x, y in zip(first, again, strict=True))
    empty = dec.reference_memories(images[:1], np.zeros_like(label_maps[:1], dtype=bool))
    assert float(empty[0].object_score_logits) < 0  # "absent" reference
    assert float(first[0].object_score_logits) > 0


def test_memories_persisted_to_disk_decode_identically(tiny_models, synthetic_case, tmp_path):
    from rafss_core.segmentation.memory import MemoryBank

    images, label_maps = synthetic_case
    first = MemoryDecoder(tiny_models.sam, tiny_models.sam_id, MemoryBank(directory=tmp_path))
    mems = first.label_memories(images[:3], np.stack([label_maps[:3] == v for v in (1, 2)]))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 6
    feats = first.image_features(images[-1:])
    want = first.decode(feats, [0, 0], [mems[0], mems[1]]).low_res_logits

    # a new process: an empty in-memory cache on the same folder computes nothing again
    fresh_bank = MemoryBank(directory=tmp_path)
    second = MemoryDecoder(tiny_models.sam, tiny_models.sam_id, fresh_bank)
    again = second.label_memories(images[:3], np.stack([label_maps[:3] == v for v in (1, 2)]))
    assert fresh_bank.disk_hits == 6 and fresh_bank.misses == 0
    got = second.decode(second.image_features(images[-1:]), [0, 0],
                        [again[0], again[1]]).low_res_logits
    assert torch.equal(want, got)
    (next(tmp_path.rglob("*.safetensors"))).write_bytes(b"corrupt")
    assert len(MemoryDecoder(tiny_models.sam, tiny_models.sam_id, MemoryBank(
        directory=tmp_path)).label_memories(images[:1], label_maps[None, :1] == 1)) == 1


@pytest.fixture(scope="module")
def pipeline_case(tiny_models, synthetic_case):
    """Three target slices segmented from a library of the other two slices plus flipped
    copies (four references, k=2), and the peers' route on the same retrieved references."""
    from rafss_core.segmentation.pipeline import build_library
    from rafss_core.segmentation.retrieval import ReferenceSlice
    from rafss_core.segmentation.volume import Volume, normalise

    images, label_maps = synthetic_case
    ref_images = np.concatenate([images[3:], images[3:, ::-1]])
    ref_labels = np.concatenate([label_maps[3:], label_maps[3:, ::-1]])
    refs = [ReferenceSlice(f"r{i}", np.ascontiguousarray(im), np.ascontiguousarray(lab))
            for i, (im, lab) in enumerate(zip(ref_images, ref_labels, strict=True))]
    embedder = tiny_models.embedder()
    library = build_library(refs, embedder)
    volume = Volume(images[:3], modality="OT")
    targets = normalise(volume)  # what segment() decodes: the volume on its intensity profile
    embeddings = embedder.embed(targets)
    ranked = library.index.search(embeddings, 2).keys
    labels = [1, 2, 3]
    peer = np.stack([
        video_predictor_logits(tiny_models.sam, ref_images[[int(key[1:]) for key in row][::-1]],
                               ref_labels[[int(key[1:]) for key in row][::-1]], targets[z],
                               labels)
        for z, row in enumerate(ranked)])  # (Z, L, H, W)
    return volume, library, embeddings, peer


@pytest.mark.parametrize(("batch_size", "slice_chunk"), [(1, 1), (5, 2), (64, None)])
def test_segment_label_map_matches_video_predictor(tiny_models, pipeline_case, batch_size,
                                                   slice_chunk):
    """The whole pipeline (device-side logits, per-chunk argmax over several labels, batches
    that split a slice's labels) gives the peers' label map, for any batch and chunk size."""
    from rafss_core.segmentation.pipeline import SegmentOptions, segment

    volume, library, embeddings, peer = pipeline_case
    decoder = MemoryDecoder(tiny_models.sam, tiny_models.sam_id, batch_size=batch_size)
    result = segment(volume, library, tiny_models, decoder=decoder, embeddings=embeddings,
                     options=SegmentOptions(k=2, slice_chunk=slice_chunk))

    best = peer.max(axis=1)
    want = np.where(best >= 0, peer.argmax(axis=1) + 1, 0)
    # decided: background with every logit clearly below 0 (absent labels tie at SAM 2's
    # NO_OBJ_SCORE), or a winner clear of 0 and of the runner-up by MARGIN_BAND. Random weights
    # make the labels' logits close (median margin ~3e-5), so about 17 % of pixels are ties.
    top2 = np.sort(peer, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    decided = (best < -TIE_BAND) | ((best > TIE_BAND) & (margin > MARGIN_BAND))
    assert decided.mean() > 0.75
    assert np.array_equal(result.array[decided], want[decided])
    assert len(np.unique(want[decided])) >= 3  # several labels and background really compete
    assert result.object_scores.shape == (3, 3)


def test_bf16_precision_runs_on_the_cpu_and_stays_close(tiny_models, pipeline_case):
    """The bf16 autocast path (a GPU's default) on the CPU: same shapes, logits near fp32."""
    volume, library, embeddings, _peer = pipeline_case
    from rafss_core.segmentation.pipeline import SegmentOptions, segment

    fp32 = MemoryDecoder(tiny_models.sam, tiny_models.sam_id)
    bf16 = MemoryDecoder(tiny_models.sam, tiny_models.sam_id, precision="bf16")
    a = segment(volume, library, tiny_models, decoder=fp32, embeddings=embeddings,
                options=SegmentOptions(k=2))
    b = segment(volume, library, tiny_models, decoder=bf16, embeddings=embeddings,
                options=SegmentOptions(k=2))
    assert b.array.shape == a.array.shape
    assert not np.array_equal(a.object_scores, b.object_scores)  # bf16 really ran
    np.testing.assert_allclose(b.object_scores, a.object_scores, atol=0.1)
    # random weights make the labels' logits near-ties (see above), so which label wins is
    # noise at bf16; whether a pixel is foreground at all is not
    agreement = np.mean((a.array > 0) == (b.array > 0))
    print(f"bf16 vs fp32 foreground agreement on the CPU: {agreement:.4f}")
    assert agreement > 0.9


def test_position_encodings_are_held_once(tiny_models, synthetic_case):
    """SAM 2's position encodings depend on the grid only, so one copy serves every slice."""
    from rafss_core.segmentation.volume import image_to_model

    images, _ = synthetic_case
    sam = tiny_models.sam
    with torch.inference_mode():
        _, _, pos, _ = sam._prepare_backbone_features(sam.forward_image(
            image_to_model(images[:3], sam.image_size)))
    for level in pos:  # (HW, N, C): what SAM 2 computes for each slice is the same
        assert torch.equal(level[:, 0], level[:, 1]) and torch.equal(level[:, 0], level[:, 2])

    feats = MemoryDecoder(sam, tiny_models.sam_id, batch_size=2).image_features(images[:3])
    assert [p.shape[1] for p in feats.vision_pos_embeds] == [1] * len(pos)
    assert all(f.shape[1] == 3 for f in feats.vision_feats)
    _, taken, _ = feats.take([2, 0, 2, 1])
    for got, want in zip(taken, pos, strict=True):
        assert got.shape == (want.shape[0], 4, want.shape[2])
        assert torch.equal(got[:, 3], want[:, 1])
