"""Reference sets, candidates and slices: add, approve, revoke, list, and load for retrieval.

State machine of a reference slice::

    candidate --approve--> approved --revoke--> revoked --approve--> approved
    candidate --revoke---> revoked

Slices arrive in *candidate* batches (:class:`ReferenceCandidate`: one import or one
correction). Approving a batch creates the task's next reference-set version and moves the
batch's slices into it; that version is what job keys name, so later jobs see the change.

Approval needs an embedding (pass it, or store it with :func:`add_reference_slice`); it also
makes sure the HNSW index for that embedding dimension exists. These functions write no audit
rows: the use cases in :mod:`rafss_core.app` do, one per action, with the actor.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.segmentation.retrieval import ReferenceSlice as RetrievalSlice
from rafss_core.store.arrays import decode_array, encode_array
from rafss_core.store.enums import CandidateState, ReferenceOrigin, ReferenceState
from rafss_core.store.models import ReferenceCandidate, ReferenceSet, ReferenceSlice, Task
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
    """A new reference set for the task, with the next version number ."""
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
    return ref_set


def _vector(embedding: np.ndarray) -> np.ndarray:
    vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vec)) or not np.any(vec):
        raise ValueError("embedding must be finite and non-zero (cosine distance needs a norm)")
    return vec


def add_reference_slice(
    session: Session,
    *,
    reference_set_id: int | None = None,
    candidate_id: int | None = None,
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
    """Add a *candidate* reference slice (image + label mask, optionally its embedding) to a
    reference set, or to a candidate batch awaiting review."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(
            f"reference image {image.shape} and mask {mask.shape} must be the same 2D shape"
        )
    if (embedding is None) != (embedder_id is None):
        raise ValueError("pass embedding and embedder_id together")
    if (reference_set_id is None) == (candidate_id is None):
        raise ValueError("pass exactly one of reference_set_id and candidate_id")
    owner = (session.get(ReferenceSet, reference_set_id) if reference_set_id is not None
             else session.get(ReferenceCandidate, candidate_id))
    if owner is None:
        raise LookupError(f"reference set {reference_set_id} or candidate {candidate_id} does "
                          "not exist: create it first")
    ref = ReferenceSlice(
        reference_set_id=reference_set_id,
        candidate_id=candidate_id,
        task_id=owner.task_id,
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
    ref, _ = _transition(session, slice_id, ReferenceState.APPROVED, actor)
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
    return ref


def revoke_reference_slice(
    session: Session, slice_id: int, *, actor: str, reason: str | None = None
) -> ReferenceSlice:
    """Revoke a slice: retrieval never returns it again (unless re-approved)."""
    ref, _ = _transition(session, slice_id, ReferenceState.REVOKED, actor)
    session.flush()
    return ref


def load_reference_slices(session: Session, ids: Iterable[str | int]) -> dict[str, RetrievalSlice]:
    """Decode the images and masks of the given slices (keys as returned by PgVectorIndex)."""
    wanted = sorted({int(i) for i in ids})
    rows = session.execute(_slice_columns().where(ReferenceSlice.id.in_(wanted))).all()
    found = {str(r.id): _retrieval_slice(r) for r in rows}
    missing = [str(i) for i in wanted if str(i) not in found]
    if missing:
        raise LookupError(f"reference slices not found: {', '.join(missing)}")
    return found


def _slice_columns() -> sa.Select:
    return sa.select(ReferenceSlice.id, ReferenceSlice.image_npz, ReferenceSlice.mask_npz,
                     ReferenceSlice.candidate_id, ReferenceSlice.series_instance_uid,
                     ReferenceSlice.slice_index)


def _retrieval_slice(row: sa.Row) -> RetrievalSlice:
    # a reference volume is one series of one candidate batch (UIDs are de-identified)
    return RetrievalSlice(str(row.id), decode_array(row.image_npz), decode_array(row.mask_npz),
                          stack_of(row.candidate_id, row.series_instance_uid),
                          int(row.slice_index))


def stack_of(candidate_id: int | None, series_instance_uid: str) -> str:
    return f"{candidate_id or 0}:{series_instance_uid}"


# --- candidate batches ---------------------------------------------------------------------


def create_candidate(
    session: Session, *, task_id: int, origin: ReferenceOrigin, actor: str,
    corrected_job_id: int | None = None, study_instance_uid: str | None = None,
    series_instance_uid: str | None = None, dice: dict[str, float] | None = None,
    note: str | None = None,
) -> ReferenceCandidate:
    """An empty candidate batch; add its slices with ``add_reference_slice(candidate_id=...)``."""
    if session.get(Task, task_id) is None:
        raise LookupError(f"task {task_id} does not exist: create the task first")
    candidate = ReferenceCandidate(
        task_id=task_id, origin=origin, created_by=actor, corrected_job_id=corrected_job_id,
        study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid,
        dice=dice or {}, note=note)
    session.add(candidate)
    session.flush()
    return candidate


def set_candidate_slice_count(session: Session, candidate_id: int) -> int:
    count = session.execute(sa.select(sa.func.count()).where(
        ReferenceSlice.candidate_id == candidate_id)).scalar_one()
    session.execute(sa.update(ReferenceCandidate).where(ReferenceCandidate.id == candidate_id)
                    .values(slices=count))
    return int(count)


def _locked_pending(session: Session, candidate_id: int) -> ReferenceCandidate:
    candidate = session.execute(
        sa.select(ReferenceCandidate).where(ReferenceCandidate.id == candidate_id)
        .with_for_update()).scalar_one_or_none()
    if candidate is None:
        raise LookupError(f"candidate {candidate_id} does not exist")
    if candidate.state != CandidateState.PENDING:
        raise InvalidTransitionError(
            f"candidate {candidate_id} is already {candidate.state}; only pending candidates "
            "can be approved or rejected")
    return candidate


def approve_candidate(session: Session, candidate_id: int, *, actor: str) -> ReferenceSet:
    """Approve every slice of a pending batch into the task's next reference-set version."""
    candidate = _locked_pending(session, candidate_id)
    if not candidate.slices:
        raise InvalidTransitionError(f"candidate {candidate_id} has no slices yet (its import "
                                     "job has not run): approve it once it has")
    ref_set = create_reference_set(session, task_id=candidate.task_id, actor=actor,
                                   note=f"candidate {candidate_id} approved")
    dims = session.execute(
        sa.update(ReferenceSlice)
        .where(ReferenceSlice.candidate_id == candidate_id,
               ReferenceSlice.state == ReferenceState.CANDIDATE.value)
        .values(reference_set_id=ref_set.id, state=ReferenceState.APPROVED.value,
                state_changed_by=actor, state_changed_at=sa.func.now())
        .returning(ReferenceSlice.embedding_dim)).scalars().all()
    for dim in sorted({d for d in dims if d}):
        ensure_vector_index(session.connection(), int(dim))
    candidate.state = CandidateState.APPROVED
    candidate.decided_by = actor
    candidate.decided_at = sa.func.now()  # type: ignore[assignment]
    candidate.reference_set_id = ref_set.id
    session.flush()
    return ref_set


def reject_candidate(session: Session, candidate_id: int, *, actor: str) -> int:
    """Reject a pending batch: its slices are revoked (kept for the audit, never retrieved)."""
    candidate = _locked_pending(session, candidate_id)
    revoked = session.execute(
        sa.update(ReferenceSlice)
        .where(ReferenceSlice.candidate_id == candidate_id)
        .values(state=ReferenceState.REVOKED.value, state_changed_by=actor,
                state_changed_at=sa.func.now())).rowcount
    candidate.state = CandidateState.REJECTED
    candidate.decided_by = actor
    candidate.decided_at = sa.func.now()  # type: ignore[assignment]
    session.flush()
    return int(revoked or 0)


def list_candidates(session: Session, *, task_id: int | None = None,
                    state: CandidateState | None = None, limit: int = 100
                    ) -> list[ReferenceCandidate]:
    q = sa.select(ReferenceCandidate).order_by(ReferenceCandidate.id.desc()).limit(limit)
    if task_id is not None:
        q = q.where(ReferenceCandidate.task_id == task_id)
    if state is not None:
        q = q.where(ReferenceCandidate.state == state.value)
    return list(session.execute(q).scalars())


def get_candidate(session: Session, candidate_id: int) -> ReferenceCandidate | None:
    return session.get(ReferenceCandidate, candidate_id)


def list_reference_sets(session: Session, task_id: int) -> list[tuple[ReferenceSet, int]]:
    """The task's versions, newest first, each with its number of approved slices."""
    approved = (sa.select(sa.func.count()).where(
        ReferenceSlice.reference_set_id == ReferenceSet.id,
        ReferenceSlice.state == ReferenceState.APPROVED.value).scalar_subquery())
    rows = session.execute(sa.select(ReferenceSet, approved).where(
        ReferenceSet.task_id == task_id).order_by(ReferenceSet.version.desc())).all()
    return [(r, int(n)) for r, n in rows]


def latest_reference_set(session: Session, task_id: int) -> ReferenceSet | None:
    return session.execute(
        sa.select(ReferenceSet).where(ReferenceSet.task_id == task_id)
        .order_by(ReferenceSet.version.desc()).limit(1)).scalar_one_or_none()


def list_reference_slices(
    session: Session, *, task_id: int, state: ReferenceState | None = None,
    candidate_id: int | None = None, limit: int = 200, offset: int = 0,
    with_arrays: bool = False,
) -> list[ReferenceSlice]:
    """Slices of a task (newest first); images and masks are loaded only with
    ``with_arrays``."""
    from sqlalchemy.orm import defer

    q = (sa.select(ReferenceSlice).where(ReferenceSlice.task_id == task_id)
         .order_by(ReferenceSlice.id.desc()).limit(limit).offset(offset))
    if not with_arrays:
        q = q.options(defer(ReferenceSlice.image_npz), defer(ReferenceSlice.mask_npz),
                      defer(ReferenceSlice.embedding))
    if state is not None:
        q = q.where(ReferenceSlice.state == state.value)
    if candidate_id is not None:
        q = q.where(ReferenceSlice.candidate_id == candidate_id)
    return list(session.execute(q).scalars())


def reference_slice_arrays(session: Session, slice_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of one slice (thumbnails)."""
    row = session.execute(sa.select(ReferenceSlice.image_npz, ReferenceSlice.mask_npz).where(
        ReferenceSlice.id == slice_id)).one_or_none()
    if row is None:
        raise LookupError(f"reference slice {slice_id} does not exist")
    return decode_array(row.image_npz), decode_array(row.mask_npz)


def candidate_slice_ids(session: Session, candidate_id: int) -> list[int]:
    return list(session.execute(sa.select(ReferenceSlice.id).where(
        ReferenceSlice.candidate_id == candidate_id).order_by(ReferenceSlice.id)).scalars())


def reference_counts(session: Session, task_id: int) -> tuple[int, int]:
    """(approved slices, pending candidates) of a task."""
    approved = session.execute(sa.select(sa.func.count()).where(
        ReferenceSlice.task_id == task_id,
        ReferenceSlice.state == ReferenceState.APPROVED.value)).scalar_one()
    pending = session.execute(sa.select(sa.func.count()).where(
        ReferenceCandidate.task_id == task_id,
        ReferenceCandidate.state == CandidateState.PENDING.value)).scalar_one()
    return int(approved), int(pending)


def same_content_approved(session: Session, slice_id: int) -> bool:
    """Whether another approved slice has exactly this slice's image and mask (then what was
    precomputed for it is still in use)."""
    me = sa.orm.aliased(ReferenceSlice)
    return session.execute(
        sa.select(ReferenceSlice.id).join(me, sa.and_(
            me.id == slice_id, ReferenceSlice.image_npz == me.image_npz,
            ReferenceSlice.mask_npz == me.mask_npz))
        .where(ReferenceSlice.id != slice_id,
               ReferenceSlice.state == ReferenceState.APPROVED.value).limit(1)
    ).first() is not None
