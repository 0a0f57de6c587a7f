"""Reference sets and slices: add, approve, revoke (each audit-logged), and load for retrieval.

State machine of a reference slice::

    candidate --approve--> approved --revoke--> revoked --approve--> approved
    candidate --revoke---> revoked

Approval needs an embedding (pass it, or store it with :func:`add_reference_slice`); it also
makes sure the HNSW index for that embedding dimension exists.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.segmentation.retrieval import ReferenceSlice as RetrievalSlice
from rafss_core.store.arrays import decode_array, encode_array
from rafss_core.store.enums import ReferenceOrigin, ReferenceState
from rafss_core.store.models import ReferenceSet, ReferenceSlice, Task
from rafss_core.store.repositories.audit import audit
from rafss_core.store.vector import ensure_vector_index


class InvalidTransitionError(ValueError):
    """A curation action that the slice's current state does not allow."""


_ALLOWED_FROM = {
    ReferenceState.APPROVED: {ReferenceState.CANDIDATE, ReferenceState.REVOKED},
    ReferenceState.REVOKED: {ReferenceState.CANDIDATE, ReferenceState.APPROVED},
}


def create_reference_set(
    session: Session, *, task_id: int, actor: str, note: str | None = None
) -> ReferenceSet:
    """A new reference set for the task, with the next version number (audit-logged)."""
    # lock the task row so two concurrent creations cannot pick the same version
    task = session.execute(
        sa.select(Task).where(Task.id == task_id).with_for_update()
    ).scalar_one_or_none()
    if task is None:
        raise LookupError(f"task {task_id} does not exist: create the task first")
    version = session.execute(
        sa.select(sa.func.coalesce(sa.func.max(ReferenceSet.version), 0) + 1).where(
            ReferenceSet.task_id == task_id
        )
    ).scalar_one()
    ref_set = ReferenceSet(task_id=task_id, version=int(version), created_by=actor, note=note)
    session.add(ref_set)
    session.flush()
    audit(
        session,
        actor=actor,
        action="reference_set.create",
        object_type="reference_set",
        object_id=ref_set.id,
        details={"task_id": task_id, "version": ref_set.version},
    )
    return ref_set


def _vector(embedding: np.ndarray) -> np.ndarray:
    vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vec)) or not np.any(vec):
        raise ValueError("embedding must be finite and non-zero (cosine distance needs a norm)")
    return vec


def add_reference_slice(
    session: Session,
    *,
    reference_set_id: int,
    study_instance_uid: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    slice_index: int,
    image: np.ndarray,
    mask: np.ndarray,
    modality: str,
    actor: str,
    origin: ReferenceOrigin = ReferenceOrigin.IMPORT,
    seg_sop_instance_uid: str | None = None,
    embedding: np.ndarray | None = None,
    embedder_id: str | None = None,
) -> ReferenceSlice:
    """Add a *candidate* reference slice (image + label mask, optionally its embedding)."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(
            f"reference image {image.shape} and mask {mask.shape} must be the same 2D shape"
        )
    if (embedding is None) != (embedder_id is None):
        raise ValueError("pass embedding and embedder_id together")
    ref_set = session.get(ReferenceSet, reference_set_id)
    if ref_set is None:
        raise LookupError(f"reference set {reference_set_id} does not exist: create it first")
    ref = ReferenceSlice(
        reference_set_id=reference_set_id,
        task_id=ref_set.task_id,
        modality=modality,
        origin=origin,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        seg_sop_instance_uid=seg_sop_instance_uid,
        slice_index=slice_index,
        image_npz=encode_array(image),
        mask_npz=encode_array(mask),
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        embedder_id=embedder_id,
        embedding=None if embedding is None else _vector(embedding),
        state=ReferenceState.CANDIDATE,
        state_changed_by=actor,
    )
    session.add(ref)
    session.flush()
    audit(
        session,
        actor=actor,
        action="reference_slice.add",
        object_type="reference_slice",
        object_id=ref.id,
        details={
            "reference_set_id": reference_set_id,
            "sop_instance_uid": sop_instance_uid,
            "slice_index": slice_index,
            "origin": origin.value,
        },
    )
    return ref


def _transition(
    session: Session, slice_id: int, target: ReferenceState, actor: str
) -> tuple[ReferenceSlice, ReferenceState]:
    ref = session.execute(
        sa.select(ReferenceSlice).where(ReferenceSlice.id == slice_id).with_for_update()
    ).scalar_one_or_none()
    if ref is None:
        raise LookupError(f"reference slice {slice_id} does not exist")
    previous = ReferenceState(ref.state)
    if previous not in _ALLOWED_FROM[target]:
        raise InvalidTransitionError(
            f"reference slice {slice_id} is {previous.value}; it cannot become {target.value}"
        )
    ref.state = target
    ref.state_changed_by = actor
    ref.state_changed_at = sa.func.now()  # type: ignore[assignment]
    return ref, previous


def approve_reference_slice(
    session: Session,
    slice_id: int,
    *,
    actor: str,
    embedding: np.ndarray | None = None,
    embedder_id: str | None = None,
) -> ReferenceSlice:
    """Approve a slice so retrieval can return it; stores ``embedding`` when given."""
    if (embedding is None) != (embedder_id is None):
        raise ValueError("pass embedding and embedder_id together")
    ref, previous = _transition(session, slice_id, ReferenceState.APPROVED, actor)
    if embedding is not None:
        ref.embedding = _vector(embedding)
        ref.embedder_id = embedder_id
    if ref.embedding is None:
        raise ValueError(
            f"reference slice {slice_id} has no embedding: embed it (approve with embedding=...) "
            "before approving"
        )
    dim = len(ref.embedding)
    session.flush()
    ensure_vector_index(session.connection(), dim)
    audit(
        session,
        actor=actor,
        action="reference_slice.approve",
        object_type="reference_slice",
        object_id=slice_id,
        details={"from": previous.value, "embedder_id": ref.embedder_id, "dim": dim},
    )
    return ref


def revoke_reference_slice(
    session: Session, slice_id: int, *, actor: str, reason: str | None = None
) -> ReferenceSlice:
    """Revoke a slice: retrieval never returns it again (unless re-approved)."""
    ref, previous = _transition(session, slice_id, ReferenceState.REVOKED, actor)
    session.flush()
    audit(
        session,
        actor=actor,
        action="reference_slice.revoke",
        object_type="reference_slice",
        object_id=slice_id,
        details={"from": previous.value, "reason": reason},
    )
    return ref


def load_reference_slices(session: Session, ids: Iterable[str | int]) -> dict[str, RetrievalSlice]:
    """Decode the images and masks of the given slices (keys as returned by PgVectorIndex)."""
    wanted = sorted({int(i) for i in ids})
    rows = session.execute(
        sa.select(ReferenceSlice.id, ReferenceSlice.image_npz, ReferenceSlice.mask_npz).where(
            ReferenceSlice.id.in_(wanted)
        )
    ).all()
    found = {
        str(r.id): RetrievalSlice(str(r.id), decode_array(r.image_npz), decode_array(r.mask_npz))
        for r in rows
    }
    missing = [str(i) for i in wanted if str(i) not in found]
    if missing:
        raise LookupError(f"reference slices not found: {', '.join(missing)}")
    return found
