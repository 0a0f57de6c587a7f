"""Received instances: idempotent recording of study, series and instance rows.

``record_instance`` is what the Storage SCP calls after the file is safely in the spool. It is
idempotent and safe under concurrent writers: every insert is ``INSERT ... ON CONFLICT DO
NOTHING`` on the UID's unique constraint, so the same SOPInstanceUID stored twice (a resend, or
two associations racing) yields one row. Under READ COMMITTED (the default) a conflicting
in-flight insert is waited for, and the follow-up ``SELECT`` sees the winner's row.

:func:`mark_instance_invalid` flags a recorded instance that must not be segmented, and
:func:`known_sop_instance_uids` tells the spool reconciliation which files are recorded already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.enums import InstanceState, SeriesState
from rafss_core.store.models import Instance, Series, Study


@dataclass(frozen=True)
class InstanceGeometry:
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    image_position_patient: tuple[float, float, float] | None = None
    image_orientation_patient: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None


@dataclass(frozen=True)
class InstanceRecord:
    """What the SCP knows about a received instance (header only, no pixels, no PHI)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    spool_path: str
    modality: str | None = None
    body_part: str | None = None
    series_description: str | None = None
    calling_ae: str | None = None
    calling_ip: str | None = None
    transfer_syntax_uid: str | None = None
    instance_number: int | None = None
    size_bytes: int | None = None
    geometry: InstanceGeometry = field(default_factory=InstanceGeometry)
    received_at: dt.datetime | None = None


@dataclass(frozen=True)
class RecordedInstance:
    study_id: int
    series_id: int
    instance_id: int
    created: bool  # False: this SOPInstanceUID was already recorded (a duplicate)


def _insert_or_get(
    session: Session, model: type, uid_column: str, values: dict[str, object]
) -> int:
    stmt = (
        pg_insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[uid_column])
        .returning(model.id)  # type: ignore[attr-defined]
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return int(new_id)
    column = getattr(model, uid_column)
    return int(
        session.execute(
            sa.select(model.id).where(column == values[uid_column])  # type: ignore[attr-defined]
        ).scalar_one()
    )


def record_instance(session: Session, record: InstanceRecord) -> RecordedInstance:
    """Record a received instance (and its study and series on first sight); idempotent.

    A *new* instance also marks its series as receiving (``last_instance_at = now()``) and
    re-opens it if the assembler had already closed it, so late arrivals are not lost. A
    duplicate changes nothing.
    """
    study_id = _insert_or_get(
        session, Study, "study_instance_uid", {"study_instance_uid": record.study_instance_uid}
    )
    series_id = _insert_or_get(
        session,
        Series,
        "series_instance_uid",
        {
            "series_instance_uid": record.series_instance_uid,
            "study_id": study_id,
            "modality": record.modality,
            "body_part": record.body_part,
            "series_description": record.series_description,
            "calling_ae": record.calling_ae,
        },
    )
    g = record.geometry
    values: dict[str, object] = {
        "series_id": series_id,
        "sop_instance_uid": record.sop_instance_uid,
        "sop_class_uid": record.sop_class_uid,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        "instance_number": record.instance_number,
        "calling_ae": record.calling_ae,
        "calling_ip": record.calling_ip,
        "rows": g.rows,
        "columns": g.columns,
        "number_of_frames": g.number_of_frames,
        "image_position_patient": _list(g.image_position_patient),
        "image_orientation_patient": _list(g.image_orientation_patient),
        "pixel_spacing": _list(g.pixel_spacing),
        "slice_thickness": g.slice_thickness,
        "spool_path": record.spool_path,
        "size_bytes": record.size_bytes,
    }
    if record.received_at is not None:
        values["received_at"] = record.received_at
    stmt = (
        pg_insert(Instance)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sop_instance_uid"])
        .returning(Instance.id)
    )
    instance_id = session.execute(stmt).scalar_one_or_none()
    created = instance_id is not None
    if created:
        session.execute(
            sa.update(Series)
            .where(Series.id == series_id)
            .values(last_instance_at=sa.func.now(), state=SeriesState.OPEN.value, closed_at=None)
        )
    else:
        instance_id = session.execute(
            sa.select(Instance.id).where(Instance.sop_instance_uid == record.sop_instance_uid)
        ).scalar_one()
        # a re-send after retention purged the file: the file is back, retention owns it again
        session.execute(
            sa.update(Instance)
            .where(Instance.id == instance_id, Instance.purged_at.is_not(None))
            .values(purged_at=None, spool_path=record.spool_path, size_bytes=record.size_bytes)
        )
    return RecordedInstance(study_id, series_id, int(instance_id), created)


def mark_instance_invalid(session: Session, instance_id: int) -> None:
    """Set ``instances.state = 'invalid'``: stored and kept, but never segmented."""
    session.execute(
        sa.update(Instance)
        .where(Instance.id == instance_id)
        .values(state=InstanceState.INVALID.value)
    )


def known_sop_instance_uids(session: Session, uids: Iterable[str]) -> set[str]:
    """The subset of ``uids`` that already have an ``instances`` row."""
    return set(
        session.execute(
            sa.select(Instance.sop_instance_uid).where(Instance.sop_instance_uid.in_(list(uids)))
        ).scalars()
    )


def _list(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]
