from __future__ import annotations

import numpy as np
import pytest

from rafss_core.segmentation.pipeline import (
    SegmentOptions,
    build_library,
    label_transfer,
    merge_labels,
    reference_slices,
    segment,
    slice_chunk,
)
from rafss_core.segmentation.volume import Volume


@pytest.fixture(scope="module")
def case(synthetic_case):
    images, labels = synthetic_case
    volume = Volume(images, spacing=(1.2, 1.2, 8.0), origin=(5, -3, 40), modality="MR")
    return volume, labels


@pytest.fixture(scope="module")
def library(tiny_models, case):
    volume, labels = case
    return build_library(reference_slices("ref", volume, labels), tiny_models.embedder())


def test_merge_labels_argmax_with_background():
    import torch

    logits = torch.tensor([[[-1.0, 2.0, 0.5, 3.0, -0.2]], [[-0.5, 1.0, 0.5, 4.0, 0.0]]])
    lab = merge_labels(logits[None], torch.tensor([1, 7], dtype=torch.int32))
    # px0: every logit < 0 -> background; px1: label 1 wins; px2: tie -> first label;
    # px3: label 7; px4: 0 is foreground
    assert lab.tolist() == [[[0, 1, 1, 7, 7]]]


def test_chunks_follow_the_batch_and_stay_within_the_logits_budget():
    assert slice_chunk(8, 3, 256, 256) == 8
    assert slice_chunk(32, 3, 256, 256) == 32  # a GPU batch
    assert slice_chunk(32, 100, 512, 512) == 5  # 100 labels: 5 x 100 MiB of logits
    assert slice_chunk(8, 1000, 1024, 1024) == 1  # never zero


def test_segment_keeps_geometry_and_reports_confidence(tiny_models, case, library):
    volume, _ = case
    result = segment(volume, library, tiny_models, k=2)
    assert result.array.shape == volume.shape
    assert result.volume.spacing == volume.spacing and result.volume.origin == volume.origin
    assert set(np.unique(result.array)) <= {0, 1, 2, 3}
    assert result.labels == {1: "1", 2: "2", 3: "3"}
    # every target slice is also a reference: best retrieval similarity is 1
    assert np.allclose(result.slice_similarity, 1.0, atol=1e-5)
    assert result.object_scores.shape == (volume.num_slices, 3)


def test_segment_is_deterministic_and_batch_invariant(tiny_models, case, library):
    from rafss_core.segmentation.memory import MemoryDecoder

    volume, _ = case
    a = segment(volume, library, tiny_models, k=2,
                decoder=MemoryDecoder(tiny_models.sam, tiny_models.sam_id, batch_size=1))
    b = segment(volume, library, tiny_models,
                options=SegmentOptions(k=2, slice_chunk=2),
                decoder=MemoryDecoder(tiny_models.sam, tiny_models.sam_id, batch_size=7))
    assert np.mean(a.array == b.array) > 0.999
    assert np.allclose(a.object_scores, b.object_scores, atol=1e-4)


def test_propagation_option_changes_decoding(tiny_models, case, library):
    volume, _ = case
    plain = segment(volume, library, tiny_models, k=2)
    prop = segment(volume, library, tiny_models, options=SegmentOptions(k=2, propagate=True))
    assert prop.array.shape == plain.array.shape
    # slice 0 has no previous slice, so it is decoded identically; later slices see one more
    # memory and differ in their scores
    assert np.allclose(prop.object_scores[0], plain.object_scores[0], atol=1e-4)
    assert not np.allclose(prop.object_scores[1:], plain.object_scores[1:], atol=1e-4)


def test_label_transfer_copies_the_identical_reference(tiny_models, case, library):
    volume, labels = case
    from rafss_core.segmentation.volume import normalise

    result = label_transfer(volume, library, tiny_models.embedder().embed(normalise(volume)))
    assert np.array_equal(result.array, labels)


def test_reference_slices_validate_shapes(case):
    volume, labels = case
    with pytest.raises(ValueError, match="labels"):
        reference_slices("x", volume, labels[:, :10])
    with pytest.raises(ValueError, match="no reference slices"):
        build_library([], None)  # type: ignore[arg-type]
