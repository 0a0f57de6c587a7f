"""Retention's queries: which spool files and result files may be deleted, and marking them.

A spool file is eligible when its series was routed, every job on the series succeeded, every
delivery of their results succeeded, no pending import or correction still needs the series,
and the series' last activity (last instance, last job finished, last delivery) is older than
the window. Anything queued, running, failed or dead, any delivery pending, failing or dead,
keeps the files. Reference data live in ``reference_slices`` and are never touched here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import DeliveryStatus, JobState, SeriesState

_SPOOL = sa.text("""
WITH blocked AS (  -- series something still needs
    SELECT j.series_id FROM jobs j WHERE j.series_id IS NOT NULL AND j.state <> :succeeded
    UNION
    SELECT j.series_id FROM jobs j JOIN results r ON r.job_id = j.id
        JOIN deliveries d ON d.result_id = r.id WHERE d.status <> :delivered
    UNION  -- a queued import of a received series, or the source series of a correction
    SELECT s.id FROM jobs j JOIN series s
        ON s.series_instance_uid = j.payload->>'series_instance_uid'
        OR s.id::text = j.payload->>'source_series_id'
        WHERE j.state <> :succeeded
), activity AS (
    SELECT s.id, greatest(s.last_instance_at, max(j.finished_at), max(d.delivered_at)) AS at
    FROM series s LEFT JOIN jobs j ON j.series_id = s.id
        LEFT JOIN results r ON r.job_id = j.id LEFT JOIN deliveries d ON d.result_id = r.id
    WHERE s.state = :routed
    GROUP BY s.id
)
SELECT i.id, i.spool_path, coalesce(i.size_bytes, 0) AS size_bytes
FROM instances i JOIN activity a ON a.id = i.series_id
WHERE i.purged_at IS NULL AND a.at < :before AND i.id > :after
  AND i.series_id NOT IN (SELECT series_id FROM blocked WHERE series_id IS NOT NULL)
ORDER BY i.id
LIMIT :limit
""")

_RESULTS = sa.text("""
SELECT r.id, r.path, r.report_path
FROM results r JOIN jobs j ON j.id = r.job_id
WHERE r.purged_at IS NULL AND r.created_at < :before AND r.id > :after
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.result_id = r.id AND d.status <> :delivered)
  AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.state <> :succeeded
                  AND c.payload->>'corrected_job_id' = j.id::text)
ORDER BY r.id
LIMIT :limit
""")


@dataclass(frozen=True)
class SpoolFile:
    instance_id: int
    path: str
    size_bytes: int


@dataclass(frozen=True)
class ResultFiles:
    result_id: int
    paths: tuple[str, ...]


def _params(before: dt.datetime, limit: int, after: int) -> dict[str, object]:
    return {"before": before, "limit": limit, "after": after, "succeeded": JobState.SUCCEEDED.value,
            "delivered": DeliveryStatus.SUCCEEDED.value, "routed": SeriesState.ROUTED.value}


def eligible_spool_files(session: Session, before: dt.datetime, limit: int = 1000,
                         after: int = 0) -> list[SpoolFile]:
    """The next ``limit`` eligible spool files with an instance id above ``after``."""
    return [SpoolFile(int(i), str(p), int(n))
            for i, p, n in session.execute(_SPOOL, _params(before, limit, after)).all()]


def eligible_results(session: Session, before: dt.datetime, limit: int = 1000,
                     after: int = 0) -> list[ResultFiles]:
    """The next ``limit`` eligible results with an id above ``after``."""
    return [ResultFiles(int(i), tuple(x for x in (p, rp) if x))
            for i, p, rp in session.execute(_RESULTS, _params(before, limit, after)).all()]


def mark_instances_purged(session: Session, ids: list[int]) -> None:
    session.execute(sa.text("UPDATE instances SET purged_at = now() WHERE id = ANY(:ids) "
                            "AND purged_at IS NULL"), {"ids": ids})


def mark_results_purged(session: Session, ids: list[int]) -> None:
    session.execute(sa.text("UPDATE results SET purged_at = now() WHERE id = ANY(:ids) "
                            "AND purged_at IS NULL"), {"ids": ids})


def spool_bytes(session: Session) -> int:
    """Bytes of the spool files not purged (as recorded on receipt)."""
    return int(session.execute(sa.text(
        "SELECT coalesce(sum(size_bytes), 0) FROM instances WHERE purged_at IS NULL")
    ).scalar_one())
