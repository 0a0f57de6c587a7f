"""Lookups over what the SCP received and what RAFSS produced from it (imports, corrections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import InstanceState, JobKind, JobState
from rafss_core.store.models import Instance, Job, Result, Series


def series_spool_paths(session: Session, series_instance_uid: str) -> list[Path]:
    """Spool files of a received series' valid instances ([] when unknown or purged by
    retention)."""
    return [Path(p) for p in session.execute(
        sa.select(Instance.spool_path).join(Series, Series.id == Instance.series_id)
        .where(Series.series_instance_uid == series_instance_uid,
               Instance.state != InstanceState.INVALID.value, Instance.purged_at.is_(None))
        .order_by(Instance.id)).scalars()]


def series_spool_paths_by_id(session: Session, series_id: int) -> list[Path]:
    return [Path(p) for p in session.execute(
        sa.select(Instance.spool_path).where(
            Instance.series_id == series_id, Instance.state != InstanceState.INVALID.value,
            Instance.purged_at.is_(None))
        .order_by(Instance.id)).scalars()]


def instance_spool_path(session: Session, sop_instance_uid: str) -> Path | None:
    path = session.execute(sa.select(Instance.spool_path).where(
        Instance.sop_instance_uid == sop_instance_uid,
        Instance.purged_at.is_(None))).scalar_one_or_none()
    return None if path is None else Path(path)


@dataclass(frozen=True)
class SegmentedSeries:
    """RAFSS's latest succeeded segmentation of a series: the job and its SEG file."""

    job_id: int
    task_id: int
    series_id: int
    result_path: Path
    seg_sop_instance_uid: str


def latest_segmentation(session: Session, series_instance_uid: str) -> SegmentedSeries | None:
    row = session.execute(
        sa.select(Job.id, Job.task_id, Job.series_id, Result.path, Result.seg_sop_instance_uid)
        .join(Result, Result.job_id == Job.id).join(Series, Series.id == Job.series_id)
        .where(Series.series_instance_uid == series_instance_uid,
               Job.kind == JobKind.SEGMENT.value, Job.state == JobState.SUCCEEDED.value,
               Job.task_id.is_not(None))
        .order_by(Job.finished_at.desc(), Job.id.desc()).limit(1)).one_or_none()
    if row is None:
        return None
    return SegmentedSeries(int(row[0]), int(row[1]), int(row[2]), Path(row[3]), str(row[4]))


def result_sop_uids(session: Session) -> set[str]:
    """SOP Instance UIDs of every SEG RAFSS produced (a SEG of ours sent back is no
    correction)."""
    return set(session.execute(sa.select(Result.seg_sop_instance_uid)).scalars())


def is_rafss_result(session: Session, sop_instance_uid: str) -> bool:
    return session.execute(sa.select(Result.id).where(
        Result.seg_sop_instance_uid == sop_instance_uid)).first() is not None
