"""Builders for store integration tests (real rows on the shared migrated database)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from rafss_core.store.repositories import (
    LabelSpec,
    add_reference_slice,
    approve_reference_slice,
    create_reference_set,
    create_task,
)

ACTOR = "test-admin"


@dataclass
class Library:
    task_id: int
    reference_set_id: int
    keys: list[str] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)


def new_task(session: Session, modality: str = "MR", embedder_id: str = "test-embedder") -> Library:
    task = create_task(
        session,
        name=f"task-{uuid.uuid4().hex[:10]}",
        modality=modality,
        labels=[LabelSpec(1, "LV", colour_rgb="#FF0000"), LabelSpec(2, "MYO")],
        embedder_id=embedder_id,
        segmenter_id="sam2.1-tiny-random",
        actor=ACTOR,
    )
    ref_set = create_reference_set(session, task_id=task.id, actor=ACTOR)
    return Library(task.id, ref_set.id)


def add_slices(
    session: Session,
    lib: Library,
    embeddings: np.ndarray,
    *,
    modality: str = "MR",
    embedder_id: str = "test-embedder",
    approve: bool = True,
    record: bool | None = None,
) -> list[str]:
    """Add one reference slice per embedding row (approved by default); return their keys.

    ``record`` (default: ``approve``) also appends them to ``lib.keys``/``lib.embeddings``, the
    expected answer set of searches for the library's main (modality, embedder).
    """
    record = approve if record is None else record
    keys = []
    series = f"2.25.{uuid.uuid4().int}"
    for i, emb in enumerate(embeddings):
        image = np.full((8, 8), i % 7 / 7, dtype=np.float32)
        mask = np.zeros((8, 8), dtype=np.uint8)
        mask[2:5, 2:5] = 1
        ref = add_reference_slice(
            session,
            reference_set_id=lib.reference_set_id,
            study_instance_uid="2.25.1",
            series_instance_uid=series,
            sop_instance_uid=f"2.25.{uuid.uuid4().int}",
            slice_index=i,
            image=image,
            mask=mask,
            modality=modality,
            actor=ACTOR,
            embedding=emb,
            embedder_id=embedder_id,
        )
        if approve:
            approve_reference_slice(session, ref.id, actor=ACTOR)
        if record:
            lib.keys.append(str(ref.id))
            lib.embeddings.append(np.asarray(emb, dtype=np.float32))
        keys.append(str(ref.id))
    return keys
