"""The default backend (`litemedsam-box`) on a real ACDC test patient beats both baselines:
label transfer with the same retrieval, and multi-atlas registration (`atlas`).

Real LiteMedSAM weights (bundled), two reference patients from `train`, the end-diastole frame
of test patient001; no timing is asserted (the figures are in the README's accuracy table).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rafss_core.evaluate import multi_atlas
from rafss_core.segmentation import metrics
from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.pipeline import (
    SegmentOptions,
    build_library,
    label_transfer,
    reference_slices,
)
from rafss_core.segmentation.segmenter import BuildContext
from tests.factories import acdc_case

pytestmark = [pytest.mark.slow, pytest.mark.data]
LABELS = {1: "RV", 2: "MYO", 3: "LV"}


def _mean_dice(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[float, dict]:
    scores = metrics.per_label(pred, truth, list(LABELS), spacing)
    return float(np.mean([s["dice"] for s in scores.values()])), scores


def test_default_beats_label_transfer_and_atlas_on_a_test_patient(tmp_path: Path):
    segmenter = build_segmenter("litemedsam-box", "litemedsam", BuildContext(tmp_path))
    assert segmenter.ids.weights == "pretrained"
    refs = []
    for case in ("patient003_frame01", "patient003_frame02", "patient004_frame01",
                 "patient004_frame02"):
        volume, labels = acdc_case(case)
        refs.extend(reference_slices(case, volume, labels))
    library = build_library(refs, segmenter)
    volume, truth = acdc_case("patient001_frame01")
    result = segmenter.segment(volume, library, labels=list(LABELS), label_names=LABELS,
                               options=SegmentOptions(k=4))
    assert result.array.shape == volume.shape
    assert result.object_scores.shape == (volume.num_slices, 3)
    assert result.embeddings is not None
    baseline = label_transfer(volume, library, result.embeddings)  # the same retrieval
    spacing = tuple(reversed(volume.spacing))
    ours, per_label = _mean_dice(result.array, truth, spacing)
    theirs, _ = _mean_dice(baseline.array, truth, spacing)
    atlas, _ = _mean_dice(multi_atlas(volume, library, result.embeddings, list(LABELS), 4, 3),
                          truth, spacing)
    print(f"litemedsam-box {ours:.3f} vs label transfer {theirs:.3f} vs atlas {atlas:.3f}: "
          f"{per_label}")
    assert ours > theirs
    assert ours > atlas
    assert ours > 0.6  # real masks: random weights give far less
