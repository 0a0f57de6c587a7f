from __future__ import annotations

import numpy as np
import pytest


def test_embeddings_are_unit_vectors_with_exposed_dim(tiny_models, synthetic_case):
    images, _ = synthetic_case
    emb = tiny_models.embedder()
    out = emb.embed(images)
    assert out.shape == (len(images), emb.dim) == (5, 64)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    both = tiny_models.embedder("cls+mean")
    out2 = both.embed(images)
    assert out2.shape == (5, 128) and both.dim == 128
    assert emb.embedder_id != both.embedder_id


def test_batching_does_not_change_embeddings(tiny_models, synthetic_case):
    images, _ = synthetic_case
    emb = tiny_models.embedder()
    emb.batch_size = 2
    small = emb.embed(images)
    emb.batch_size = 32
    assert np.allclose(small, emb.embed(images), atol=1e-5)


def test_embedding_distinguishes_images(tiny_models, synthetic_case):
    images, _ = synthetic_case
    out = tiny_models.embedder().embed(np.stack([images[0], images[0], 1 - images[0]]))
    assert np.allclose(out[0], out[1], atol=1e-6)
    assert not np.allclose(out[0], out[2], atol=1e-3)


def test_bad_shape(tiny_models):
    with pytest.raises(ValueError, match="N, H, W"):
        tiny_models.embedder().embed(np.zeros((4, 4)))
