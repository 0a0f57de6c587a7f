"""Results: the DICOM-SEG a job produced (one row per job; a re-run replaces it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.models import Result


def upsert_result(session: Session, *, job_id: int, seg_sop_instance_uid: str,
                  seg_series_instance_uid: str, path: str, details: dict[str, Any],
                  report_path: str | None = None) -> int:
    """Insert the job's result, or update its files and details on a re-run; returns its id."""
    return int(session.execute(pg_insert(Result).values(
        job_id=job_id, seg_sop_instance_uid=seg_sop_instance_uid,
        seg_series_instance_uid=seg_series_instance_uid, path=path, report_path=report_path,
        details=details,
    ).on_conflict_do_update(index_elements=["job_id"], set_={
        "path": path, "report_path": report_path, "details": details, "purged_at": None})
        .returning(Result.id)).scalar_one())
