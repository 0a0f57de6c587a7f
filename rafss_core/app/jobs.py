"""Use cases: jobs (list, detail, re-run)."""

from __future__ import annotations

from typing import Any

from rafss_core.app.context import App
from rafss_core.store.repositories import audit
from rafss_core.store.repositories import jobs as repo
from rafss_core.store.repositories.jobs import JobDetail, JobRow


def row_dict(row: JobRow | JobDetail) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(row)
    for key in ("created_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat(timespec="seconds")
    return out


def list_jobs(app: App, *, state: str | None = None, task: str | None = None,
              kind: str | None = None, limit: int = 50, offset: int = 0) -> list[JobRow]:
    """Jobs newest first. Raises ValueError for an unknown state or kind."""
    if not 0 < limit <= 1000:
        raise ValueError("limit must be 1 to 1000")
    with app.sessions() as s:
        return repo.list_jobs(s, state=state or None, task=task or None, kind=kind or None,
                              limit=limit, offset=offset)


def get_job(app: App, job_id: int) -> JobDetail:
    """One job with payload, result (with per-slice confidence) and deliveries.

    Raises:
        LookupError: no such job.
    """
    with app.sessions() as s:
        job = repo.get_job(s, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    return job


def rerun_job(app: App, actor: str, job_id: int) -> JobDetail:
    """Queue a failed, dead or succeeded job again (the dispatcher publishes it).

    Raises:
        LookupError: no such job.
        ValueError: it is queued or running.
    """
    with app.sessions.begin() as s:
        previous = repo.requeue_job(s, job_id)
        audit(s, actor=actor, action="job.rerun", object_type="job", object_id=job_id,
              details={"from": previous})
    return get_job(app, job_id)
