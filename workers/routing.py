"""Routing: closed series -> job rows (the transactional outbox).

A rule matches on modality, body part, SeriesDescription regex and calling AE; a NULL
criterion matches anything. Each matching (series, task) becomes one ``segment`` job whose
idempotency key covers the series UID, the sorted instance UIDs, the task, the reference-set
version and the segmentation's identity (backend, every checkpoint's SHA-256 prefix and the
retrieval embedder), so routing the same content twice never creates a second job, while a
series that grew (late instances re-open it), a new reference-set version or a re-imported
checkpoint does.

Received DICOM-SEG series are never segmented. A SEG that references a series RAFSS segmented
(and is not RAFSS's own SEG sent back) is a radiologist's correction: it becomes an
``embed_references`` job that turns it into a *candidate* reference batch for that task, with
its Dice against RAFSS's SEG (see :mod:`rafss_core.app.imports`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from rafss_core.store.enums import JobKind, SeriesState
from rafss_core.store.models import RoutingRule, Series, Task
from rafss_core.store.repositories.jobs import create_job
from rafss_core.store.repositories.received import is_rafss_result, latest_segmentation
from rafss_core.store.repositories.references import latest_reference_set
from rafss_core.store.repositories.routing import (
    enabled_rules,
    lock_closed_series,
    series_instances,
)

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def job_key(series_uid: str, instance_uids: list[str], task_name: str,
            reference_set_version: int | None, model_ids: list[str]) -> str:
    """The idempotency key of a segment job (sha256 hex)."""
    h = hashlib.sha256()
    for part in (series_uid, *sorted(instance_uids), task_name, str(reference_set_version),
                 *model_ids):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _matches(rule: RoutingRule, series: Series) -> bool:
    def same(want: str | None, have: str | None) -> bool:
        return want is None or (have or "").strip().upper() == want.strip().upper()

    if not (same(rule.modality, series.modality) and same(rule.body_part, series.body_part)
            and same(rule.calling_ae, series.calling_ae)):
        return False
    if rule.series_description_regex:
        try:
            return re.search(rule.series_description_regex, series.series_description or "",
                             re.IGNORECASE) is not None
        except re.error:
            log.error("routing rule %s has an invalid regex; fix it with `rafss routes`", rule.id)
            return False
    return True


@dataclass(frozen=True)
class RoutedJob:
    job_id: int
    series_id: int
    task_id: int
    created: bool


def segmentation_key_parts(task: Task, models_dir: Path | None) -> list[str]:
    """Backend, model ids with checkpoint hashes and embedder of a task, for the job key.

    A task whose models cannot be resolved (never imported) still gets its job, keyed by its
    backend and model spec; the worker then fails it with the error that names the import.
    """
    from rafss_core.segmentation.backends import segmenter_ids
    from rafss_core.segmentation.models import ModelSpecError

    if models_dir is not None:
        try:
            return segmenter_ids(task.backend, task.segmenter_id, models_dir).key_parts
        except (ModelSpecError, FileNotFoundError) as exc:
            log.warning("task %s: models unresolved (%s); job keyed by its model spec",
                        task.name, type(exc).__name__)
    return [task.backend, task.segmenter_id, task.embedder_id]


def route_closed_series(session: Session, models_dir: Path | None = None,
                        limit: int = 100, max_attempts: int | None = None) -> list[RoutedJob]:
    """Turn closed series into job rows and mark them routed, in the caller's transaction.

    ``models_dir`` is where imported checkpoints are registered; it resolves the checkpoint
    hashes that go into each job key. ``max_attempts``: ``RAFSS_JOB_MAX_ATTEMPTS``."""
    series_rows = lock_closed_series(session, limit)
    if not series_rows:
        return []
    rules = enabled_rules(session)
    routed: list[RoutedJob] = []
    for series in series_rows:
        series.state = SeriesState.ROUTED
        instances = series_instances(session, series.id)
        if any(cls == SEG_SOP_CLASS for _, cls, _ in instances):
            correction = _correction_job(session, series, instances, max_attempts)
            if correction is not None:
                routed.append(correction)
            continue
        task_ids = list(dict.fromkeys(r.task_id for r in rules if _matches(r, series)))
        if not task_ids:
            log.info("series %s matched no routing rule", series.id)
        for task_id in task_ids:
            routed.append(_create_job(session, series, task_id, [u for u, _, _ in instances],
                                      models_dir, max_attempts))
    return routed


def _referenced_series_uid(path: str) -> str | None:
    """The series a SEG file annotates (its ReferencedSeriesSequence), read without pixels."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except Exception as exc:  # a malformed SEG is recorded, not routed
        log.warning("SEG %s has no readable ReferencedSeriesSequence (%s): not a correction",
                    Path(path).name, type(exc).__name__)
        return None


def _correction_job(session: Session, series: Series, instances: list[tuple[str, str, str]],
                    max_attempts: int | None = None) -> RoutedJob | None:
    sop_uid, _, path = next(i for i in instances if i[1] == SEG_SOP_CLASS)
    if is_rafss_result(session, sop_uid):
        log.info("series %s is RAFSS's own SEG sent back: recorded, not a correction",
                 series.id)
        return None
    referenced = _referenced_series_uid(path)
    target = latest_segmentation(session, referenced) if referenced else None
    if target is None:
        log.info("series %s is a DICOM-SEG of a series RAFSS did not segment: recorded only",
                 series.id)
        return None
    task = session.get(Task, target.task_id)
    assert task is not None
    payload = {"source": "correction", "task": task.name, "actor": f"scp:{series.calling_ae}",
               "corrected_job_id": target.job_id, "source_series_id": target.series_id,
               "result_path": str(target.result_path), "seg_sop_instance_uid": sop_uid}
    job_id, created = create_job(session, kind=JobKind.EMBED_REFERENCES,
                                 idempotency_key=f"embed|correction|{sop_uid}",
                                 task_id=task.id, series_id=series.id, payload=payload,
                                 max_attempts=max_attempts)
    log.info("series %s is a correction of job %s (task %s): job %s", series.id,
             target.job_id, task.name, job_id)
    return RoutedJob(job_id, series.id, task.id, created)


def _create_job(session: Session, series: Series, task_id: int, instance_uids: list[str],
                models_dir: Path | None, max_attempts: int | None = None) -> RoutedJob:
    task = session.get(Task, task_id)
    assert task is not None
    ref_set = latest_reference_set(session, task_id)
    version = ref_set.version if ref_set else None
    key = job_key(series.series_instance_uid, instance_uids, task.name, version,
                  segmentation_key_parts(task, models_dir))
    payload = {"series_instance_uid": series.series_instance_uid, "task": task.name,
               "reference_set_version": version, "instances": len(instance_uids)}
    job_id, created = create_job(session, kind=JobKind.SEGMENT, idempotency_key=key,
                                 series_id=series.id, task_id=task_id,
                                 reference_set_id=ref_set.id if ref_set else None,
                                 payload=payload, max_attempts=max_attempts)
    log.info("series %s -> task %s: job %s (%s)", series.id, task.name, job_id,
             "queued" if created else "already exists")
    return RoutedJob(int(job_id), series.id, task_id, created)
