"""Slice embeddings of received series, cached per (series, embedder) for re-runs."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.models import SliceEmbedding


def series_embeddings(session: Session, series_id: int, embedder_id: str,
                      count: int) -> np.ndarray | None:
    """The series' ``(count, dim)`` slice embeddings in slice order, when all are stored."""
    rows = session.execute(sa.select(SliceEmbedding.slice_index, SliceEmbedding.embedding).where(
        SliceEmbedding.series_id == series_id,
        SliceEmbedding.embedder_id == embedder_id)).all()
    if len(rows) != count:
        return None
    ordered = sorted(rows, key=lambda r: r.slice_index)
    return np.stack([np.asarray(r.embedding, dtype=np.float32) for r in ordered])


def store_series_embeddings(session: Session, series_id: int, embedder_id: str,
                            embeddings: np.ndarray) -> None:
    """Upsert one row per slice (idempotent: a re-run overwrites the same rows)."""
    for z, vec in enumerate(embeddings):
        session.execute(pg_insert(SliceEmbedding).values(
            series_id=series_id, slice_index=z, embedder_id=embedder_id,
            embedding=vec).on_conflict_do_update(
            index_elements=["series_id", "embedder_id", "slice_index"],
            set_={"embedding": vec}))
