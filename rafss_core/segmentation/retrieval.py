"""Reference retrieval: the index protocol and an exact in-memory cosine implementation.

A :class:`ReferenceIndex` answers "which reference slices are most similar to these target
slices?". Embeddings are L2-normalised, so cosine similarity is a dot product. The pgvector
implementation lives in ``rafss_core.store`` and satisfies the same protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ReferenceSlice:
    """One expert-annotated 2D slice: image in [0, 1] and its label map on the same grid."""

    key: str
    image: np.ndarray  # (H, W) float32 in [0, 1]
    labels: np.ndarray  # (H, W) integer label values, 0 = background
    # the annotated volume the slice came from and its index there ("" / -1: unknown), so
    # backends that register whole reference volumes can rebuild them
    stack: str = ""
    position: int = -1
    spacing: tuple[float, float, float] | None = None  # mm between slices, rows, columns

    def __post_init__(self) -> None:
        if self.image.shape != self.labels.shape or self.image.ndim != 2:
            raise ValueError(
                f"reference {self.key}: image {self.image.shape} and labels "
                f"{self.labels.shape} must be the same 2D shape"
            )


@dataclass(frozen=True)
class Neighbours:
    """Top-k answer per query, most similar first."""

    keys: list[list[str]]
    similarities: np.ndarray  # (Q, k) cosine similarity

    @property
    def best_similarity(self) -> np.ndarray:
        """Per-query similarity of the best match: the retrieval confidence signal."""
        return self.similarities[:, 0] if self.similarities.size else np.zeros(len(self.keys))


@runtime_checkable
class ReferenceIndex(Protocol):
    """Filtered top-k search over approved reference embeddings."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> Neighbours: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class ExactIndex:
    """Brute-force cosine search in memory. Exact; fine for a few thousand references."""

    def __init__(self, keys: Sequence[str], embeddings: np.ndarray) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(keys) != embeddings.shape[0]:
            raise ValueError("need one embedding row per key")
        if len(set(keys)) != len(keys):
            raise ValueError("reference keys must be unique")
        self._keys = list(keys)
        self._emb = l2_normalise(embeddings)

    @property
    def dim(self) -> int:
        return int(self._emb.shape[1])

    def __len__(self) -> int:
        return len(self._keys)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        if k < 1:
            raise ValueError("k must be >= 1")
        if len(self) == 0:
            raise LookupError("the reference index is empty: approve references for this task")
        q = l2_normalise(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ValueError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        sims = q @ self._emb.T
        k = min(k, len(self))
        # stable sort on (-similarity, insertion order) so ties are deterministic
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(sims, order, axis=1)
        return Neighbours([[self._keys[i] for i in row] for row in order], top)


@dataclass
class ReferenceLibrary:
    """Reference slices plus an index over their embeddings."""

    slices: Mapping[str, ReferenceSlice]
    index: ReferenceIndex

    def __len__(self) -> int:
        return len(self.index)

    def stack(self, stack: str) -> list[ReferenceSlice]:
        """Every slice held here of one annotated reference volume, in slice order."""
        return sorted((s for s in self.slices.values() if s.stack == stack),
                      key=lambda s: s.position)

    def stacks_by_votes(self, found: Neighbours, n: int) -> list[str]:
        """The ``n`` reference volumes most retrieved for a target volume: each retrieved
        slice votes for its volume with its similarity. Slices of no known volume do not
        vote."""
        votes: dict[str, float] = {}
        for keys, sims in zip(found.keys, found.similarities, strict=True):
            for key, sim in zip(keys, sims, strict=True):
                stack = self.slices[key].stack
                if stack:
                    votes[stack] = votes.get(stack, 0.0) + max(float(sim), 0.0)
        return sorted(votes, key=lambda s: (-votes[s], s))[:n]
