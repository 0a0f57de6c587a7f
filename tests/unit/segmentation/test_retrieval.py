from __future__ import annotations

import numpy as np
import pytest

from rafss_core.segmentation.retrieval import ExactIndex, ReferenceIndex, ReferenceSlice


def test_exact_index_top_k_order_and_similarity():
    emb = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    index = ExactIndex(["a", "b", "c", "d"], emb * 3)  # normalised internally
    assert isinstance(index, ReferenceIndex)
    res = index.search(np.array([[1.0, 0.1, 0.0]]), k=3)
    assert res.keys == [["a", "b", "c"]]
    q = np.array([1.0, 0.1, 0.0]) / np.linalg.norm([1.0, 0.1, 0.0])
    assert np.allclose(res.similarities[0], [q[0], 0.8 * q[0] + 0.6 * q[1], q[1]], atol=1e-6)
    assert np.allclose(res.best_similarity, [q[0]])


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((200, 16)).astype(np.float32)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    index = ExactIndex([f"r{i}" for i in range(200)], emb)
    res = index.search(queries, k=7)
    en = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = np.argsort(-(qn @ en.T), axis=1)[:, :7]
    assert res.keys == [[f"r{i}" for i in row] for row in expected]
    assert np.all(np.diff(res.similarities, axis=1) <= 1e-7)


def test_exact_index_errors_and_clamping():
    index = ExactIndex(["a", "b"], np.eye(2))
    assert index.search(np.eye(2), k=5).similarities.shape == (2, 2)
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones((1, 3)), k=1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones((1, 2)), k=0)
    with pytest.raises(ValueError, match="unique"):
        ExactIndex(["a", "a"], np.eye(2))
    with pytest.raises(LookupError, match="approve references"):
        ExactIndex([], np.zeros((0, 2))).search(np.ones((1, 2)), k=1)


def test_reference_slice_shape_check():
    with pytest.raises(ValueError, match="same 2D shape"):
        ReferenceSlice("x", np.zeros((4, 4)), np.zeros((4, 5)))
