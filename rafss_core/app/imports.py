"""Use cases: reference imports requested through the API, and the worker jobs that run them.

The API only *stages* an import: it checks the upload (or the received study + SEG) enough to
answer 422 with a precise message, keeps the files under ``<data_dir>/uploads/<id>/`` and
queues an ``embed_references`` job; a worker embeds the slices into a candidate batch. Nothing is
stored when the check fails. Radiologists' corrections take the same job, queued by routing
when a received SEG references a series RAFSS segmented.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rafss_core.app.context import App
from rafss_core.datasets.annotated import AnnotatedVolume, dicom_pair, nifti_pair
from rafss_core.segmentation.segmenter import Segmenter
from rafss_core.store.enums import JobKind, ReferenceOrigin
from rafss_core.store.repositories import audit
from rafss_core.store.repositories import received as received_repo
from rafss_core.store.repositories.jobs import create_job
from rafss_core.store.repositories.tasks import task_by_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportRequest:
    job_id: int
    task: str
    source: str
    slices: int

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "task": self.task, "source": self.source,
                "slices": self.slices}


def _task_labels(app: App, task: str) -> tuple[int, str, list[Any], set[int]]:
    from rafss_core.dicom.labels import task_segments

    with app.sessions() as s:
        t = task_by_name(s, task)
        return t.id, t.modality, task_segments(list(t.labels)), {lab.number for lab in t.labels}


def _check_labels(labels: np.ndarray, allowed: set[int], task: str) -> None:
    if not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
        raise ValueError("the label image has non-integer values; it must be a label map")
    extra = sorted(int(v) for v in set(np.unique(labels).tolist()) - allowed - {0})
    if extra:
        raise ValueError(f"label values {extra} are not labels of task {task!r} "
                         f"(it has {sorted(allowed)})")
    if not np.any(labels):
        raise ValueError("the label image is empty: nothing to learn from")


def _key(*parts: str) -> str:
    """A job idempotency key of bounded length (UIDs are up to 64 characters each)."""
    import hashlib

    return f"embed|{parts[0]}|" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def _queue(app: App, actor: str, task: str, task_id: int, source: str, payload: dict[str, Any],
           key: str, slices: int) -> ImportRequest:
    with app.sessions.begin() as s:
        job_id, _ = create_job(s, kind=JobKind.EMBED_REFERENCES, idempotency_key=key,
                               task_id=task_id, payload={**payload, "task": task,
                                                         "source": source, "actor": actor})
        audit(s, actor=actor, action=f"references.{source}", object_type="job",
              object_id=job_id, details={"task": task, "slices": slices})
    return ImportRequest(job_id, task, source, slices)


def stage_nifti_upload(app: App, actor: str, task: str, image: tuple[str, bytes],
                       label: tuple[str, bytes]) -> ImportRequest:
    """Stage an uploaded NIfTI image + label map; queue its import.

    Raises:
        LookupError: no such task.
        ValueError: unreadable files, different geometry, label values the task lacks (the
            staged files are removed).
    """
    task_id, modality, _, allowed = _task_labels(app, task)
    stage = app.settings.uploads_dir / uuid.uuid4().hex
    try:
        stage.mkdir(parents=True)
        suffix = lambda name: ".nii.gz" if name.endswith(".gz") else ".nii"  # noqa: E731
        image_path = stage / f"image{suffix(image[0])}"
        label_path = stage / f"label{suffix(label[0])}"
        image_path.write_bytes(image[1])
        label_path.write_bytes(label[1])
        av = nifti_pair(image_path, label_path, modality, stage.name)
        _check_labels(av.labels, allowed, task)
    except Exception:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return _queue(app, actor, task, task_id, "upload",
                  {"format": "nifti", "dir": str(stage)}, f"embed|upload|{stage.name}",
                  av.volume.num_slices)


def stage_dicom_upload(app: App, actor: str, task: str, series: Sequence[tuple[str, bytes]],
                       seg: tuple[str, bytes]) -> ImportRequest:
    """Stage an uploaded DICOM series + SEG; queue its import (errors as for NIfTI)."""
    task_id, _, segments, allowed = _task_labels(app, task)
    stage = app.settings.uploads_dir / uuid.uuid4().hex
    try:
        (stage / "series").mkdir(parents=True)
        files = []
        for i, (_, data) in enumerate(series):
            path = stage / "series" / f"{i:05d}.dcm"
            path.write_bytes(data)
            files.append(path)
        (stage / "seg.dcm").write_bytes(seg[1])
        av = dicom_pair(files, stage / "seg.dcm", segments)
        _check_labels(av.labels, allowed, task)
    except Exception:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return _queue(app, actor, task, task_id, "upload", {"format": "dicom", "dir": str(stage)},
                  f"embed|upload|{stage.name}", av.volume.num_slices)


def import_received(app: App, actor: str, task: str, series_instance_uid: str,
                    seg_sop_instance_uid: str) -> ImportRequest:
    """Queue the import of a series and a SEG that the SCP already received.

    Raises:
        LookupError: no such task, series or SEG.
        ValueError: the SEG does not annotate the series or has labels the task lacks.
    """
    task_id, _, segments, allowed = _task_labels(app, task)
    with app.sessions() as s:
        files = received_repo.series_spool_paths(s, series_instance_uid)
        seg_path = received_repo.instance_spool_path(s, seg_sop_instance_uid)
    if not files:
        raise LookupError("no received series with that Series Instance UID")
    if seg_path is None:
        raise LookupError("no received SEG with that SOP Instance UID")
    av = dicom_pair(files, seg_path, segments)
    _check_labels(av.labels, allowed, task)
    return _queue(app, actor, task, task_id, "received",
                  {"series_instance_uid": series_instance_uid,
                   "seg_sop_instance_uid": seg_sop_instance_uid},
                  _key("received", task, series_instance_uid, seg_sop_instance_uid),
                  av.volume.num_slices)


# --- worker side ----------------------------------------------------------------------------


def run_embed_job(app: App, payload: dict[str, Any], segmenter: Segmenter | None = None) -> int:
    """Run an ``embed_references`` job: build the volume(s), embed them into a candidate.
    Returns the candidate's id. Idempotent enough: a crashed attempt leaves no candidate
    (the candidate and its slices are written in one transaction)."""
    from rafss_core.app.references import import_volumes

    task, source, actor = payload["task"], payload["source"], payload.get("actor", "worker")
    _, modality, segments, _ = _task_labels(app, task)
    dice: dict[str, float] | None = None
    corrected_job_id = None
    if source == "upload":
        stage = Path(payload["dir"])
        if payload["format"] == "nifti":
            image = next(stage.glob("image.nii*"))
            label = next(stage.glob("label.nii*"))
            volumes = [nifti_pair(image, label, modality, stage.name)]
        else:
            volumes = [dicom_pair(sorted((stage / "series").iterdir()), stage / "seg.dcm",
                                  segments)]
        origin = ReferenceOrigin.UPLOAD
    elif source == "received":
        with app.sessions() as s:
            files = received_repo.series_spool_paths(s, payload["series_instance_uid"])
            seg = received_repo.instance_spool_path(s, payload["seg_sop_instance_uid"])
        if not files or seg is None:
            raise LookupError("the received series or SEG is gone from the store")
        volumes = [dicom_pair(files, seg, segments)]
        origin = ReferenceOrigin.IMPORT
    elif source == "correction":
        volumes, dice = correction_volume(app, payload, segments)
        corrected_job_id = int(payload["corrected_job_id"])
        origin = ReferenceOrigin.FEEDBACK
    else:
        raise ValueError(f"unknown import source {source!r}")
    note = {"correction": f"correction of job {corrected_job_id}"}.get(source, source)
    view = import_volumes(app, actor, task, volumes, origin=origin, segmenter=segmenter,
                          corrected_job_id=corrected_job_id, dice=dice, note=note)
    if source == "upload":
        shutil.rmtree(payload["dir"], ignore_errors=True)  # now in the bank, de-identified
    return view.id


def correction_volume(app: App, payload: dict[str, Any], segments: Sequence[Any]
                      ) -> tuple[list[AnnotatedVolume], dict[str, float]]:
    """The corrected SEG on its source series, and its Dice against RAFSS's SEG per label."""
    from rafss_core.dicom.seg import read_seg
    from rafss_core.dicom.series import load_series
    from rafss_core.segmentation.metrics import dice

    with app.sessions() as s:
        files = received_repo.series_spool_paths_by_id(s, int(payload["source_series_id"]))
        seg_path = received_repo.instance_spool_path(s, payload["seg_sop_instance_uid"])
    if not files or seg_path is None:
        raise LookupError("the corrected series or the received SEG is gone from the store")
    loaded = load_series(files)
    corrected = read_seg(seg_path, loaded, segments=segments)
    ours = read_seg(Path(payload["result_path"]), loaded, segments=segments)
    scores = {spec.name: round(float(dice(corrected.labels == spec.label,
                                          ours.labels == spec.label)), 4)
              for spec in segments}
    av = AnnotatedVolume(loaded.volume, corrected.labels, loaded.study_instance_uid,
                         loaded.series_instance_uid, loaded.sop_instance_uids,
                         corrected.sop_instance_uid)
    return [av], scores


def run_prepare_job(app: App, payload: dict[str, Any], segmenter: Segmenter,
                    task_labels: Sequence[int]) -> int:
    """Precompute what the backend needs of an approved batch (memories, encodings)."""
    from rafss_core.store.repositories import load_reference_slices
    from rafss_core.store.repositories.references import candidate_slice_ids

    with app.sessions() as s:
        ids = candidate_slice_ids(s, int(payload["candidate_id"]))
        refs = list(load_reference_slices(s, ids).values()) if ids else []
    return segmenter.prepare(refs, list(task_labels), progress=True)


def run_forget_job(app: App, payload: dict[str, Any], segmenter: Segmenter,
                   task_labels: Sequence[int]) -> int:
    """Remove what was precomputed for revoked slices, unless an approved slice with the same
    image and mask still uses it."""
    from rafss_core.store.repositories import load_reference_slices
    from rafss_core.store.repositories.references import same_content_approved

    with app.sessions() as s:
        ids = [i for i in payload["forget_slice_ids"] if not same_content_approved(s, int(i))]
        refs = list(load_reference_slices(s, ids).values()) if ids else []
    return segmenter.forget(refs, list(task_labels))
