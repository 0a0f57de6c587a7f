"""Regression (issue 19): slices where the references vote every label absent, volumes with no
label anywhere, one-slice volumes, a single reference and a label no reference holds must
segment (empty where absent), on both backends. Before the fix ``litemedsam-box`` called
``torch.cat([])`` on such a slice and the whole job failed."""

from __future__ import annotations

import numpy as np
import pytest

from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.pipeline import (
    SegmentOptions,
    build_library,
    label_transfer,
    reference_slices,
    segment,
)
from rafss_core.segmentation.segmenter import BuildContext
from rafss_core.segmentation.volume import Volume

LABELS = [1, 2, 3]


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    return build_segmenter("litemedsam-box", "litemedsam",
                           BuildContext(tmp_path_factory.mktemp("models")))


def _blank(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A slice outside the organs: dim noise, nothing annotated."""
    rng = np.random.default_rng(seed)
    return np.clip(0.05 + 0.02 * rng.standard_normal(shape), 0, 1).astype(np.float32)


def _padded(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volume with one blank, unannotated slice above and below (the pelvis of an
    abdominal study, the slices above the heart)."""
    shape = images.shape[1:]
    imgs = np.concatenate([_blank(shape, 1)[None], images, _blank(shape, 2)[None]])
    labs = np.concatenate([np.zeros((1, *shape), labels.dtype), labels,
                           np.zeros((1, *shape), labels.dtype)])
    return imgs, labs


@pytest.fixture(scope="module")
def padded_library(lite, synthetic_case):
    images, labels = _padded(*synthetic_case)
    return build_library(reference_slices("ref", Volume(images), labels), lite)


def test_end_slices_that_no_reference_labels_are_left_empty(lite, padded_library,
                                                            synthetic_case):
    images, _ = _padded(*synthetic_case)
    target = Volume(images[[0, 2, 3, 6]])  # blank, two organ slices, blank
    result = lite.segment(target, padded_library, labels=LABELS, options=SegmentOptions(k=1))
    assert result.array.shape == target.shape
    assert not result.array[0].any() and not result.array[-1].any()
    assert (result.object_scores[[0, -1]] == -1).all()  # voted absent
    assert result.array[1:3].any()  # the organ slices are still segmented
    assert set(np.unique(result.array[1:3])) <= {0, *LABELS}


def test_no_label_anywhere_gives_an_empty_label_map(lite, synthetic_case):
    shape = synthetic_case[0].shape[1:]
    images = np.stack([_blank(shape, s) for s in range(3)])
    library = build_library(reference_slices("empty", Volume(images),
                                             np.zeros(images.shape, np.int16)), lite)
    result = lite.segment(Volume(images[::-1].copy()), library, labels=LABELS,
                          options=SegmentOptions(k=2))
    assert not result.array.any()
    assert result.object_scores.shape == (3, 3)


def test_one_slice_volume_and_a_single_reference(lite, synthetic_case):
    images, labels = synthetic_case
    library = build_library(reference_slices("one", Volume(images[1:2]), labels[1:2]), lite)
    result = lite.segment(Volume(images[1:2]), library, labels=LABELS,
                          options=SegmentOptions(k=4))  # k above the library's size
    assert result.array.shape == (1, *images.shape[1:])
    assert result.array.any()


def test_a_label_no_reference_holds_is_absent_not_an_error(lite, padded_library,
                                                           synthetic_case):
    images, _ = synthetic_case
    result = lite.segment(Volume(images[:2]), padded_library, labels=[*LABELS, 9],
                          options=SegmentOptions(k=2))
    assert not (result.array == 9).any()
    assert (result.object_scores[:, 3] == -1).all()
    assert label_transfer(Volume(images[:2]), padded_library,
                          result.embeddings).array.shape == (2, *images.shape[1:])


def test_sam2_memory_handles_the_same_edge_cases(tiny_models, synthetic_case):
    images, labels = _padded(*synthetic_case)
    library = build_library(reference_slices("ref", Volume(images[:1]), labels[:1]),
                            tiny_models.embedder())  # one reference, and it is empty
    one = segment(Volume(images[3:4]), library, tiny_models, k=4, labels=[*LABELS, 9])
    assert one.array.shape == (1, *images.shape[1:])
    assert one.object_scores.shape == (1, 4)


def test_an_empty_reference_set_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="import and approve references first"):
        build_library([], None)  # type: ignore[arg-type]
