"""The peers' route (FS-MedSAM2, FATE-SAM): SAM 2's public ``SAM2VideoPredictor`` API.

For each target slice a short "video" is built: the ``k`` references on frames ``0..k-1`` and
the target on frame ``k``; every label's reference mask is added with ``add_new_mask`` and
``propagate_in_video`` runs from frame ``k``. RAFSS must give the same masks (the equivalence
test) and be much faster (``benchmarks/segment_speed.py``). Not used in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from unittest import mock

import numpy as np

from rafss_core.segmentation.volume import image_to_model


def video_predictor_logits(
    sam: object, references: np.ndarray, reference_labels: np.ndarray, target: np.ndarray,
    labels: Sequence[int],
) -> np.ndarray:
    """Logits ``(L, H, W)`` on the target's grid for each label, frame order as given
    (``references[-1]`` is nearest the target). Images are in [0, 1]."""
    import sam2.sam2_video_predictor as svp

    frames_np = np.concatenate([references, target[None]])
    frames = image_to_model(frames_np, sam.image_size)  # type: ignore[attr-defined]
    h, w = target.shape
    # SAM 2 reads frames from JPEG files; hand it the very same tensors RAFSS uses instead.
    with mock.patch.object(svp, "load_video_frames", lambda **_: (frames, h, w)):
        state = sam.init_state(video_path="<in-memory>")  # type: ignore[attr-defined]
    k = len(references)
    for j in range(k):
        for lab in labels:
            sam.add_new_mask(state, frame_idx=j, obj_id=int(lab),  # type: ignore[attr-defined]
                             mask=reference_labels[j] == lab)
    out = None
    for frame_idx, obj_ids, masks in sam.propagate_in_video(  # type: ignore[attr-defined]
            state, start_frame_idx=k):
        if frame_idx == k:
            assert list(obj_ids) == [int(v) for v in labels]
            out = masks[:, 0].float().cpu().numpy()
    assert out is not None
    return out
