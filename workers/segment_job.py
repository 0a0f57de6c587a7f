"""The segment job: series -> volume -> embeddings -> retrieval -> SAM 2 -> DICOM-SEG -> deliveries.

Every step is idempotent: slice embeddings are upserted, the SEG's UIDs derive from the job's
idempotency key (a re-run rewrites the same file and the same ``results`` row), and deliveries
are unique per (result, destination). A re-run therefore never produces a second SEG.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.config import Settings
from rafss_core.segmentation.backends import build_segmenter, verify_models
from rafss_core.segmentation.pipeline import LabelMap, SegmentOptions
from rafss_core.segmentation.retrieval import ReferenceLibrary, ReferenceSlice
from rafss_core.segmentation.segmenter import Segmenter, SegmenterIds
from rafss_core.store.models import Job, Label, ReferenceSet, Series, Task
from rafss_core.store.repositories.deliveries import create_deliveries_for_result
from rafss_core.store.repositories.embeddings import series_embeddings, store_series_embeddings
from rafss_core.store.repositories.received import series_spool_paths_by_id
from rafss_core.store.repositories.results import upsert_result
from services.spool import write_atomic
from workers.jobs import Claim

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What a worker process keeps between jobs: DB handles and loaded segmenters (whose
    reference memories stay warm across jobs)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _segmenters: dict[tuple[str, str], Segmenter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def segmenter(self, backend: str, models: str) -> Segmenter:
        """The task's segmenter, loaded once per worker process. Its checkpoints are
        verified before every job: a file changed since import fails the job with an error
        that names the fix."""
        verify_models(backend, models, self.settings.models_dir)
        with self._lock:
            if (backend, models) not in self._segmenters:
                self._segmenters[(backend, models)] = build_segmenter(
                    backend, models, self.settings.build_context())
            return self._segmenters[(backend, models)]


class StoredReferenceSlices(Mapping[str, ReferenceSlice]):
    """Reference slices loaded from the store on first use."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._cache: dict[str, ReferenceSlice] = {}

    def __getitem__(self, key: str) -> ReferenceSlice:
        if key not in self._cache:
            from rafss_core.store.repositories import load_reference_slices

            try:
                with self._sessions() as s:
                    self._cache[key] = load_reference_slices(s, [key])[key]
            except LookupError as exc:
                raise KeyError(key) from exc
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True)
class JobInputs:
    job: Job
    task: Task
    labels: list[Label]
    series: Series
    spool_paths: list[Path]
    reference_set_version: int | None


def _inputs(sessions: sessionmaker[Session], job_id: int) -> JobInputs:
    with sessions() as s:
        job = s.get(Job, job_id)
        if job is None or job.task_id is None or job.series_id is None:
            raise ValueError(f"job {job_id} has no task or series (deleted?)")
        task = s.get(Task, job.task_id)
        series = s.get(Series, job.series_id)
        assert task is not None and series is not None
        labels = list(task.labels)
        paths = series_spool_paths_by_id(s, series.id)
        version = None
        if job.reference_set_id is not None:
            ref_set = s.get(ReferenceSet, job.reference_set_id)
            version = ref_set.version if ref_set else None
        s.expunge_all()
    if not paths:
        raise ValueError(f"series {series.id} has no valid instances to segment")
    return JobInputs(job, task, labels, series, paths, version)


def encode_seg(inputs: JobInputs, loaded: Any, result: LabelMap | np.ndarray,
               ids: SegmenterIds) -> Any:
    """The DICOM-SEG for a job's label map (highdicom), UIDs derived from the job key."""
    from rafss_core.dicom.seg import AlgorithmInfo, write_seg

    algorithm = AlgorithmInfo(model_ids=list(ids.model_ids),
                              reference_set_version=str(inputs.reference_set_version),
                              task=inputs.task.name, backend=ids.backend)
    from rafss_core.dicom.labels import task_segments

    array = result.array if isinstance(result, LabelMap) else result
    return write_seg(array, loaded, task_segments(inputs.labels), algorithm,
                     inputs.job.idempotency_key, seg_type=str(inputs.task.seg_type))


def encode_report(inputs: JobInputs, loaded: Any, seg: Any, labels: np.ndarray,
                  result: LabelMap, flagged: list[int], ids: SegmenterIds) -> Any:
    """The TID 1500 volume report next to the SEG (UIDs derived from the job key)."""
    from rafss_core.dicom.labels import task_segments
    from rafss_core.dicom.report import Confidence, write_volume_report

    similarity = np.asarray(result.slice_similarity, dtype=np.float64)
    scores = np.asarray(result.object_scores, dtype=np.float64)
    skipped = set(flagged)
    kept = [z for z in range(len(similarity)) if z not in skipped]
    object_scores = {value: float(np.mean(scores[kept, i]))
                     for i, value in enumerate(sorted(result.labels))
                     if scores.ndim == 2 and i < scores.shape[1] and kept}
    confidence = Confidence(float(np.mean(similarity)), float(np.min(similarity)), flagged,
                            object_scores)
    return write_volume_report(seg, labels, loaded, task_segments(inputs.labels), confidence,
                               inputs.job.idempotency_key,
                               algorithm_name=f"RAFSS {ids.backend}",
                               algorithm_version=",".join(ids.model_ids)[:64])


def _save(ds: Any, path: Path) -> str:
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    write_atomic(path, buf.getvalue())
    return str(path)


def inputs_label_name(inputs: JobInputs, value: int) -> str:
    return next((lab.name for lab in inputs.labels if lab.number == value), str(value))


def run_segment_job(ctx: WorkerContext, claim: Claim) -> None:
    from rafss_core.dicom.series import load_series
    from rafss_core.store.vector import PgVectorIndex

    inputs = _inputs(ctx.sessions, claim.job_id)
    task = inputs.task
    # models first: a checkpoint that fails verification refuses the job before any work
    segmenter = ctx.segmenter(task.backend, task.segmenter_id)
    loaded = load_series(inputs.spool_paths)
    ids = segmenter.ids
    if ids.embedder_id != task.embedder_id:
        raise ValueError(
            f"task {task.name!r} references were embedded with {task.embedder_id!r} but the "
            f"worker's {ids.backend} models give {ids.embedder_id!r}; re-import the references "
            "or fix the task's models")
    with ctx.sessions() as s:
        emb = series_embeddings(s, inputs.series.id, ids.embedder_id, loaded.volume.num_slices)
    index = PgVectorIndex(ctx.engine, task.id, task.modality, task.embedder_id)
    if len(index) == 0:
        raise LookupError(f"task {task.name!r} has no approved references; approve some with "
                          "`rafss references import --approve`")
    library = ReferenceLibrary(StoredReferenceSlices(ctx.sessions), index)
    result = segmenter.segment(
        loaded.volume, library, labels=[lab.number for lab in inputs.labels],
        label_names={lab.number: lab.name for lab in inputs.labels},
        options=SegmentOptions(k=task.k), embeddings=emb)
    if emb is None and result.embeddings is not None:
        with ctx.sessions.begin() as s:
            store_series_embeddings(s, inputs.series.id, ids.embedder_id, result.embeddings)
    # slices no reference resembles are flagged and left unsegmented, never silently guessed
    similarity = np.asarray(result.slice_similarity, dtype=np.float64)
    flagged = [int(z) for z in np.flatnonzero(similarity < float(task.min_similarity))]
    labels = result.array.copy()
    labels[flagged] = 0
    seg = encode_seg(inputs, loaded, labels, ids)
    path = _save(seg, ctx.settings.results_dir / f"{seg.SOPInstanceUID}.dcm")
    report = encode_report(inputs, loaded, seg, labels, result, flagged, ids)
    report_path = _save(report, ctx.settings.results_dir / f"{report.SOPInstanceUID}.dcm")
    details = {
        "mean_retrieval_similarity": float(np.mean(result.slice_similarity)),
        "min_retrieval_similarity": float(np.min(result.slice_similarity)),
        # per-slice confidence, shown on the job page: the best retrieval similarity of each
        # slice (in the SEG's slice order) and, per label, the decoder's object score
        "slice_similarity": [round(float(x), 4) for x in result.slice_similarity],
        "slice_object_scores": {
            inputs_label_name(inputs, value): [round(float(x), 3) for x in column]
            for value, column in zip(sorted(result.labels), np.asarray(
                result.object_scores).T, strict=False)},
        "labels_present": sorted(int(v) for v in np.unique(labels) if v),
        "min_similarity": float(task.min_similarity),
        "flagged_slices": flagged,
        "report_sop_instance_uid": str(report.SOPInstanceUID),
        "backend": ids.backend,
        "models": list(ids.model_ids),
        "weights": ids.weights,
    }
    with ctx.sessions.begin() as s:
        result_id = upsert_result(s, job_id=claim.job_id,
                                  seg_sop_instance_uid=seg.SOPInstanceUID,
                                  seg_series_instance_uid=seg.SeriesInstanceUID, path=path,
                                  report_path=report_path, details=details)
        create_deliveries_for_result(s, result_id)
    log.info("job %s: SEG %s and report %s written (%d slices, %d flagged, backend=%s, "
             "weights=%s)", claim.job_id, seg.SOPInstanceUID, report.SOPInstanceUID,
             loaded.volume.num_slices, len(flagged), ids.backend, ids.weights)
