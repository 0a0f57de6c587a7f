"""Received instances: idempotent recording of study, series and instance rows.

``record_instance`` is what the Storage SCP calls after the file is safely in the spool. It is
one SQL statement (one round trip: the SCP acknowledges a C-STORE only once it returns, so its
latency is the sender's), idempotent and safe under concurrent writers: every insert is
``INSERT ... ON CONFLICT DO NOTHING`` on the UID's unique constraint, so the same SOPInstanceUID
stored twice (a resend, or two associations racing) yields one row. Under READ COMMITTED (the
default) a conflicting in-flight insert is waited for, and the statement is run again to see the
winner's row.

:func:`mark_instance_invalid` flags a recorded instance that must not be segmented, and
:func:`known_sop_instance_uids` tells the spool reconciliation which files are recorded already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from rafss_core.store.enums import InstanceState, SeriesState
from rafss_core.store.models import Instance


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


# One statement, one round trip: study, series and instance are inserted on first sight
# (``INSERT ... SELECT ... WHERE NOT EXISTS ... ON CONFLICT DO NOTHING``), a new instance
# re-opens an existing series, a duplicate re-owns a purged file and takes the invalid mark.
# Every sub-statement of a ``WITH`` sees the same snapshot, so a row committed by a racing
# writer *during* the statement (``ON CONFLICT`` waited for it) is invisible to the look-ups;
# the statement then reports no instance id and :func:`record_instance` runs it again, with a
# fresh snapshot that sees the winner's rows.
_RECORD_SQL = sa.text(
    """
WITH study_new AS (
    INSERT INTO studies (study_instance_uid)
    SELECT CAST(:study_uid AS varchar)
    WHERE NOT EXISTS (SELECT 1 FROM studies WHERE study_instance_uid = :study_uid)
    ON CONFLICT (study_instance_uid) DO NOTHING
    RETURNING id
), study AS (
    SELECT id FROM study_new
    UNION ALL
    SELECT id FROM studies WHERE study_instance_uid = :study_uid
    LIMIT 1
), series_new AS (
    INSERT INTO series (series_instance_uid, study_id, modality, body_part,
                        series_description, calling_ae)
    SELECT CAST(:series_uid AS varchar), study.id, CAST(:modality AS varchar),
           CAST(:body_part AS varchar), CAST(:series_description AS varchar),
           CAST(:calling_ae AS varchar)
    FROM study
    WHERE NOT EXISTS (SELECT 1 FROM series WHERE series_instance_uid = :series_uid)
    ON CONFLICT (series_instance_uid) DO NOTHING
    RETURNING id
), series_row AS (
    SELECT id FROM series_new
    UNION ALL
    SELECT id FROM series WHERE series_instance_uid = :series_uid
    LIMIT 1
), instance_new AS (
    INSERT INTO instances (
        series_id, sop_instance_uid, sop_class_uid, transfer_syntax_uid, instance_number,
        calling_ae, calling_ip, rows, columns, number_of_frames, image_position_patient,
        image_orientation_patient, pixel_spacing, slice_thickness, spool_path, size_bytes,
        received_at, state)
    SELECT series_row.id, CAST(:sop_uid AS varchar), CAST(:sop_class_uid AS varchar),
           CAST(:transfer_syntax_uid AS varchar), CAST(:instance_number AS integer),
           CAST(:calling_ae AS varchar), CAST(:calling_ip AS inet), CAST(:rows AS integer),
           CAST(:columns AS integer), CAST(:number_of_frames AS integer),
           CAST(:image_position_patient AS float8[]),
           CAST(:image_orientation_patient AS float8[]), CAST(:pixel_spacing AS float8[]),
           CAST(:slice_thickness AS float8), CAST(:spool_path AS text),
           CAST(:size_bytes AS bigint), COALESCE(CAST(:received_at AS timestamptz), now()),
           CAST(:new_state AS varchar)
    FROM series_row
    ON CONFLICT (sop_instance_uid) DO NOTHING
    RETURNING id, series_id
), series_reopened AS (
    UPDATE series SET last_instance_at = now(), state = :open_state, closed_at = NULL
    WHERE id = (SELECT series_id FROM instance_new)
    RETURNING id
), instance_old AS (
    UPDATE instances SET
        purged_at = NULL,
        spool_path = CASE WHEN purged_at IS NULL THEN spool_path ELSE :spool_path END,
        size_bytes = CASE WHEN purged_at IS NULL THEN size_bytes ELSE :size_bytes END,
        state = CASE WHEN CAST(:invalid AS boolean) THEN :invalid_state ELSE state END
    WHERE sop_instance_uid = :sop_uid
      AND NOT EXISTS (SELECT 1 FROM instance_new)
      AND (purged_at IS NOT NULL OR CAST(:invalid AS boolean))
    RETURNING id
)
SELECT (SELECT id FROM study) AS study_id,
       (SELECT id FROM series_row) AS series_id,
       (SELECT id FROM instance_new) AS new_id,
       (SELECT id FROM instances WHERE sop_instance_uid = :sop_uid) AS old_id
"""
)
# how often a statement that lost a race (see above) is run again; one retry always suffices
# unless the winner's transaction was itself rolled back, so a few are plenty
_RECORD_ATTEMPTS = 5


def record_instance(
    session: Session | Connection, record: InstanceRecord, *, invalid: bool = False
) -> RecordedInstance:
    """Record a received instance (and its study and series on first sight); idempotent.

    One SQL statement (one round trip) in the caller's transaction; run it on an autocommit
    connection and it is its own transaction. A *new* instance also marks its series as
    receiving (``last_instance_at = now()``) and re-opens it if the assembler had already closed
    it, so late arrivals are not lost. A duplicate changes nothing, except that a re-send after
    retention purged the file makes the file retention's again (``purged_at`` cleared).
    ``invalid``: the instance is stored but must never be segmented (``state = 'invalid'``, on
    the new row or on the one already there).
    """
    g = record.geometry
    params: dict[str, object] = {
        "study_uid": record.study_instance_uid,
        "series_uid": record.series_instance_uid,
        "modality": record.modality,
        "body_part": record.body_part,
        "series_description": record.series_description,
        "calling_ae": record.calling_ae,
        "sop_uid": record.sop_instance_uid,
        "sop_class_uid": record.sop_class_uid,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        "instance_number": record.instance_number,
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
        "received_at": record.received_at,
        "invalid": invalid,
        "new_state": (InstanceState.INVALID if invalid else InstanceState.RECEIVED).value,
        "invalid_state": InstanceState.INVALID.value,
        "open_state": SeriesState.OPEN.value,
    }
    for _ in range(_RECORD_ATTEMPTS):
        row = session.execute(_RECORD_SQL, params).one()
        if row.new_id is not None:
            return RecordedInstance(int(row.study_id), int(row.series_id), int(row.new_id), True)
        if row.old_id is not None and row.series_id is not None:
            return RecordedInstance(int(row.study_id), int(row.series_id), int(row.old_id), False)
    raise RuntimeError(
        f"could not record {record.sop_instance_uid}: racing writers kept rolling back"
    )


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
