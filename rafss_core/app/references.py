"""Use cases: reference curation (import, review, revoke) and the worker side of imports.

Flow: an import (files on the CLI, an upload, a study + SEG already received, or a
radiologist's correction) becomes one *candidate* batch of embedded slices. A reviewer approves
it (the task's next reference-set version, so later jobs retrieve it and re-key) or rejects it.
Approval enqueues a ``prepare_references`` job: the workers, never the API, precompute what the
backend needs of the new slices (SAM 2 memories, LiteMedSAM encodings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from rafss_core.app.context import App
from rafss_core.app.views import CandidateView, ReferenceSetView, SliceView
from rafss_core.datasets.annotated import AnnotatedVolume
from rafss_core.segmentation.segmenter import Segmenter
from rafss_core.segmentation.volume import normalise
from rafss_core.store.enums import CandidateState, JobKind, ReferenceOrigin, ReferenceState
from rafss_core.store.models import ReferenceCandidate, ReferenceSlice, Task
from rafss_core.store.repositories import audit
from rafss_core.store.repositories import references as repo
from rafss_core.store.repositories.jobs import create_job
from rafss_core.store.repositories.tasks import task_by_name

log = logging.getLogger(__name__)


def candidate_view(session: Session, c: ReferenceCandidate) -> CandidateView:
    task = session.get(Task, c.task_id)
    version = None
    if c.reference_set_id is not None:
        from rafss_core.store.models import ReferenceSet

        ref_set = session.get(ReferenceSet, c.reference_set_id)
        version = ref_set.version if ref_set else None
    return CandidateView(
        id=c.id, task=task.name if task else "?", origin=str(c.origin), state=str(c.state),
        slices=c.slices, dice=dict(c.dice or {}), corrected_job_id=c.corrected_job_id,
        note=c.note, created_by=c.created_by, created_at=c.created_at,
        decided_by=c.decided_by, reference_set_version=version)


def _slice_view(r: ReferenceSlice, labels_present: list[int] | None = None) -> SliceView:
    return SliceView(r.id, str(r.state), str(r.origin), r.candidate_id, r.reference_set_id,
                     r.slice_index, r.height, r.width, labels_present or [])


def task_segmenter(app: App, task: str) -> Segmenter:
    """The task's segmenter, built from the settings' model folders."""
    from rafss_core.segmentation.backends import build_segmenter

    with app.sessions() as s:
        t = task_by_name(s, task)
        backend, spec = t.backend, t.segmenter_id
    return build_segmenter(backend, spec, app.settings.build_context())


def deidentifier(app: App) -> Any:
    from rafss_core.deid import Deidentifier, installation_seed

    return Deidentifier(installation_seed(app.settings.deid_seed_file))


def import_volumes(
    app: App, actor: str, task: str, volumes: Sequence[AnnotatedVolume], *,
    origin: ReferenceOrigin = ReferenceOrigin.IMPORT, approve: bool = False,
    segmenter: Segmenter | None = None, corrected_job_id: int | None = None,
    dice: dict[str, float] | None = None, note: str | None = None,
) -> CandidateView:
    """Embed every slice of the volumes (empty slices too: they teach "absent") and store them,
    de-identified, as one candidate batch; with ``approve``, approve it at once.

    Heavy (runs the task's embedder): the CLI and the workers call it, never the API.

    Raises:
        LookupError: no such task.
        ValueError: the models' embedder differs from the task's, or a label value the task
            lacks.
    """
    from tqdm import tqdm

    with app.sessions() as s:
        t = task_by_name(s, task)
        task_id, modality, want_id = t.id, t.modality, t.embedder_id
        allowed = {0, *(lab.number for lab in t.labels)}
    for av in volumes:
        extra = sorted(set(np.unique(av.labels).tolist()) - allowed)
        if extra:
            raise ValueError(f"label values {extra} are not labels of task {task!r} "
                             f"(it has {sorted(allowed - {0})})")
    segmenter = segmenter or task_segmenter(app, task)
    got_id = segmenter.ids.embedder_id
    if got_id != want_id:
        raise ValueError(f"task {task!r} expects embedder {want_id!r}, models give {got_id!r}")
    embedded = []
    for av in tqdm(volumes, desc="embed references", unit="volume"):
        images = normalise(av.volume)
        embedded.append((av, images, segmenter.embed(images)))
    deid = deidentifier(app)
    mapped = [(deid.uids(av.study_uid, av.series_uid, av.sop_uids),
               deid.uids(av.study_uid, av.series_uid, [av.seg_uid]).sop_instance_uids[0]
               if av.seg_uid else None) for av in volumes]
    with app.sessions.begin() as s:
        first = mapped[0][0] if mapped else None
        candidate = repo.create_candidate(
            s, task_id=task_id, origin=origin, actor=actor, corrected_job_id=corrected_job_id,
            study_instance_uid=first.study_instance_uid if first else None,
            series_instance_uid=first.series_instance_uid if first else None,
            dice=dice, note=note or f"{len(volumes)} volume(s)")
        for (av, images, emb), (uids, seg_uid) in zip(embedded, mapped, strict=True):
            for z in range(av.volume.num_slices):
                repo.add_reference_slice(
                    s, candidate_id=candidate.id, study_instance_uid=uids.study_instance_uid,
                    series_instance_uid=uids.series_instance_uid,
                    sop_instance_uid=uids.sop_instance_uids[z], slice_index=z,
                    image=images[z], mask=av.labels[z].astype(np.uint8), modality=modality,
                    actor=actor, origin=origin, seg_sop_instance_uid=seg_uid,
                    embedding=emb[z], embedder_id=got_id)
        count = repo.set_candidate_slice_count(s, candidate.id)
        s.refresh(candidate)
        audit(s, actor=actor, action="references.import", object_type="reference_candidate",
              object_id=candidate.id, details={"task": task, "origin": origin.value,
                                               "volumes": len(volumes), "slices": count,
                                               "dice": dice or {}})
        view = candidate_view(s, candidate)
    log.info("task %s: candidate %d with %d slices (%s)", task, view.id, view.slices,
             origin.value)
    if approve:
        view = approve_candidate(app, actor, view.id)
    return view


def approve_candidate(app: App, actor: str, candidate_id: int) -> CandidateView:
    """Approve a pending batch into the task's next reference-set version and enqueue the
    precomputation of its memories/encodings for the workers.

    Raises:
        LookupError: no such candidate.
        InvalidTransitionError: it is not pending or has no slices yet.
    """
    with app.sessions.begin() as s:
        ref_set = repo.approve_candidate(s, candidate_id, actor=actor)
        candidate = repo.get_candidate(s, candidate_id)
        assert candidate is not None
        job_id, _ = create_job(
            s, kind=JobKind.PREPARE_REFERENCES, task_id=candidate.task_id,
            reference_set_id=ref_set.id,
            idempotency_key=f"prepare|candidate:{candidate_id}|set:{ref_set.id}",
            payload={"candidate_id": candidate_id})
        audit(s, actor=actor, action="candidate.approve", object_type="reference_candidate",
              object_id=candidate_id, details={"reference_set_version": ref_set.version,
                                               "slices": candidate.slices,
                                               "prepare_job_id": job_id})
        return candidate_view(s, candidate)


def reject_candidate(app: App, actor: str, candidate_id: int,
                     reason: str | None = None) -> CandidateView:
    """Reject a pending batch: its slices are revoked and never retrieved.

    Raises:
        LookupError: no such candidate.
        InvalidTransitionError: it is not pending.
    """
    with app.sessions.begin() as s:
        revoked = repo.reject_candidate(s, candidate_id, actor=actor)
        candidate = repo.get_candidate(s, candidate_id)
        assert candidate is not None
        audit(s, actor=actor, action="candidate.reject", object_type="reference_candidate",
              object_id=candidate_id, details={"slices": revoked, "reason": reason})
        return candidate_view(s, candidate)


def revoke_slice(app: App, actor: str, slice_id: int, reason: str | None = None) -> SliceView:
    """Revoke an approved slice; the task gets a new reference-set version (job keys change)
    and a worker removes what was precomputed only for it (memories, encodings).

    Raises:
        LookupError: no such slice.
        InvalidTransitionError: it is already revoked.
    """
    with app.sessions.begin() as s:
        current = s.get(ReferenceSlice, slice_id)
        if current is not None and current.state == ReferenceState.CANDIDATE:
            raise repo.InvalidTransitionError(
                f"slice {slice_id} is a pending candidate: reject its candidate "
                f"{current.candidate_id} instead")
        ref = repo.revoke_reference_slice(s, slice_id, actor=actor, reason=reason)
        ref_set = repo.create_reference_set(s, task_id=ref.task_id, actor=actor,
                                            note=f"slice {slice_id} revoked")
        job_id, _ = create_job(s, kind=JobKind.PREPARE_REFERENCES, task_id=ref.task_id,
                               reference_set_id=ref_set.id,
                               idempotency_key=f"forget|slice:{slice_id}|set:{ref_set.id}",
                               payload={"forget_slice_ids": [slice_id]})
        audit(s, actor=actor, action="reference_slice.revoke", object_type="reference_slice",
              object_id=slice_id, details={"reason": reason, "forget_job_id": job_id,
                                           "reference_set_version": ref_set.version})
        return _slice_view(ref)


def list_candidates(app: App, task: str | None = None,
                    state: str | None = None) -> list[CandidateView]:
    wanted = _enum(CandidateState, state, "candidate state")
    with app.sessions() as s:
        task_id = task_by_name(s, task).id if task else None
        return [candidate_view(s, c) for c in repo.list_candidates(s, task_id=task_id,
                                                                   state=wanted)]


def get_candidate(app: App, candidate_id: int) -> CandidateView:
    with app.sessions() as s:
        c = repo.get_candidate(s, candidate_id)
        if c is None:
            raise LookupError(f"candidate {candidate_id} does not exist")
        return candidate_view(s, c)


def list_reference_sets(app: App, task: str) -> list[ReferenceSetView]:
    with app.sessions() as s:
        return [ReferenceSetView(r.id, r.version, n, r.created_by, r.created_at, r.note)
                for r, n in repo.list_reference_sets(s, task_by_name(s, task).id)]


def list_slices(app: App, task: str, *, state: str | None = None,
                candidate_id: int | None = None, limit: int = 200,
                offset: int = 0) -> list[SliceView]:
    wanted = _enum(ReferenceState, state, "slice state")
    with app.sessions() as s:
        rows = repo.list_reference_slices(s, task_id=task_by_name(s, task).id, state=wanted,
                                          candidate_id=candidate_id, limit=limit, offset=offset)
        return [_slice_view(r) for r in rows]


def slice_thumbnail(app: App, slice_id: int, size: int = 160) -> bytes:
    """A PNG of the slice with its mask overlaid in the task's label colours."""
    from rafss_core.app.thumbnails import overlay_png

    with app.sessions() as s:
        image, mask = repo.reference_slice_arrays(s, slice_id)
        ref = s.get(ReferenceSlice, slice_id)
        assert ref is not None
        task = s.get(Task, ref.task_id)
        colours = {lab.number: lab.colour_rgb for lab in task.labels} if task else {}
    return overlay_png(image, mask, colours, size)


def _enum(cls: Any, value: str | None, what: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; use one of "
                         f"{', '.join(m.value for m in cls)}") from None
