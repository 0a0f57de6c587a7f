"""Reference jobs: ``embed_references`` (an import or a correction becomes a candidate batch)
and ``prepare_references`` (after approval: memories / encodings of the approved slices).

Both run the application layer's use cases with the worker's loaded segmenter (models load
once per worker process)."""

from __future__ import annotations

import logging

from rafss_core.app import App
from rafss_core.app.imports import run_embed_job, run_forget_job, run_prepare_job
from rafss_core.store.models import Task
from rafss_core.store.repositories.jobs import get_job
from workers.jobs import Claim
from workers.segment_job import WorkerContext

log = logging.getLogger(__name__)


def _job_task(ctx: WorkerContext, job_id: int) -> tuple[dict, Task]:
    with ctx.sessions() as s:
        job = get_job(s, job_id)
        if job is None:
            raise LookupError(f"job {job_id} vanished")
        from rafss_core.store.repositories.tasks import task_by_name

        if job.task is None:
            raise LookupError(f"job {job_id} has no task (deleted?)")
        task = task_by_name(s, job.task)
        _ = list(task.labels)
        s.expunge_all()
    return job.payload, task


def run_embed_references(ctx: WorkerContext, claim: Claim) -> None:
    payload, task = _job_task(ctx, claim.job_id)
    segmenter = ctx.segmenter(task.backend, task.segmenter_id)
    candidate = run_embed_job(App(ctx.sessions, ctx.settings), payload, segmenter)
    log.info("job %s: candidate %s for task %s (%s)", claim.job_id, candidate, task.name,
             payload.get("source"))


def run_prepare_references(ctx: WorkerContext, claim: Claim) -> None:
    payload, task = _job_task(ctx, claim.job_id)
    segmenter = ctx.segmenter(task.backend, task.segmenter_id)
    labels = [lab.number for lab in task.labels]
    app = App(ctx.sessions, ctx.settings)
    if "forget_slice_ids" in payload:  # a revocation: remove what only those slices used
        n = run_forget_job(app, payload, segmenter, labels)
        log.info("job %s: %d precomputed items of revoked slices removed (task %s)",
                 claim.job_id, n, task.name)
        return
    n = run_prepare_job(app, payload, segmenter, labels)
    log.info("job %s: %d reference slices prepared for task %s", claim.job_id, n, task.name)
