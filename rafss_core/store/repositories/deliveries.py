"""Deliveries: sending one result (a DICOM-SEG file) to one destination, with retries.

The schedule lives in the rows, so a restart loses nothing:

- ``status`` is ``pending`` (never tried), ``failed`` (retrying; ``next_attempt_at`` says
  when), ``succeeded`` or ``dead`` (retries exhausted or a permanent refusal; ``last_error``
  keeps the reason);
- :func:`due_deliveries` *claims* the due rows: it locks them with ``FOR UPDATE SKIP LOCKED``
  and pushes ``next_attempt_at`` forward by a lease, so two workers never send the same row and
  a worker that dies mid-send only delays it until the lease runs out;
- :func:`record_delivery_attempt` stores the outcome of each attempt (``attempts`` + 1, last
  DIMSE status, last error, next attempt time or the final state).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.enums import DeliveryStatus
from rafss_core.store.models import Delivery, Destination, Result

DEFAULT_LEASE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class DestinationInfo:
    """Where to send: a C-STORE SCP, optionally over TLS (PEM file paths, never key material),
    or a STOW-RS base ``url``; ``protocol`` picks the sender."""

    id: int
    name: str
    ae_title: str | None
    host: str
    port: int
    tls_enabled: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify_hostname: bool = True
    protocol: str = "c-store"
    url: str | None = None


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: which file goes where, and how many attempts it has had."""

    id: int
    result_id: int
    seg_sop_instance_uid: str
    path: str
    destination: DestinationInfo
    attempts: int
    report_path: str | None = None

    @property
    def paths(self) -> list[str]:
        """The files of the delivery: the SEG, then its volume report when there is one."""
        return [self.path, *([self.report_path] if self.report_path else [])]


def add_destination(
    session: Session,
    *,
    name: str,
    ae_title: str | None,
    host: str,
    port: int,
    protocol: str = "c-store",
    url: str | None = None,
    tls_enabled: bool = False,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
    tls_verify_hostname: bool = True,
) -> int:
    """Create a destination (or update the one with this name); returns its id."""
    values = {
        "name": name,
        "protocol": protocol,
        "url": url,
        "ae_title": ae_title.strip() if ae_title else None,
        "host": host,
        "port": port,
        "tls_enabled": tls_enabled,
        "tls_ca_file": tls_ca_file,
        "tls_cert_file": tls_cert_file,
        "tls_key_file": tls_key_file,
        "tls_verify_hostname": tls_verify_hostname,
    }
    stmt = (
        pg_insert(Destination)
        .values(**values)
        .on_conflict_do_update(index_elements=["name"], set_=values)
        .returning(Destination.id)
    )
    return int(session.execute(stmt).scalar_one())


def create_delivery(session: Session, result_id: int, destination_id: int) -> int:
    """A pending delivery of ``result_id`` to ``destination_id``; idempotent, returns its id."""
    stmt = (
        pg_insert(Delivery)
        .values(result_id=result_id, destination_id=destination_id)
        .on_conflict_do_nothing(index_elements=["result_id", "destination_id"])
        .returning(Delivery.id)
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return int(new_id)
    return int(
        session.execute(
            sa.select(Delivery.id).where(
                Delivery.result_id == result_id, Delivery.destination_id == destination_id
            )
        ).scalar_one()
    )


def create_deliveries_for_result(session: Session, result_id: int) -> list[int]:
    """A pending delivery of ``result_id`` to every enabled destination."""
    ids = session.execute(sa.select(Destination.id).where(Destination.enabled)).scalars()
    return [create_delivery(session, result_id, int(d)) for d in ids]


def _destination_info(d: Destination) -> DestinationInfo:
    return DestinationInfo(
        id=d.id,
        name=d.name,
        ae_title=d.ae_title,
        host=d.host,
        port=d.port,
        tls_enabled=d.tls_enabled,
        tls_ca_file=d.tls_ca_file,
        tls_cert_file=d.tls_cert_file,
        tls_key_file=d.tls_key_file,
        tls_verify_hostname=d.tls_verify_hostname,
        protocol=d.protocol,
        url=d.url,
    )


def due_deliveries(
    session: Session,
    now: dt.datetime,
    *,
    limit: int = 100,
    lease: dt.timedelta = DEFAULT_LEASE,
    ids: list[int] | None = None,
) -> list[DueDelivery]:
    """Claim the deliveries due at ``now`` (pending, or failed with ``next_attempt_at <= now``).

    Claimed rows get ``next_attempt_at = now + lease``: other workers skip them, and if this
    worker dies before recording the outcome they become due again when the lease ends.
    ``ids`` restricts the claim to those deliveries.
    """
    query = (
        sa.select(Delivery, Result, Destination)
        .join(Result, Result.id == Delivery.result_id)
        .join(Destination, Destination.id == Delivery.destination_id)
        .where(
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]),
            sa.or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            Destination.enabled,
        )
        .order_by(Delivery.next_attempt_at.asc().nulls_first(), Delivery.id)
        .limit(limit)
        .with_for_update(of=Delivery, skip_locked=True)
    )
    if ids is not None:
        query = query.where(Delivery.id.in_(ids))
    rows = session.execute(query).all()
    claimed: list[DueDelivery] = []
    for delivery, result, destination in rows:
        delivery.next_attempt_at = now + lease
        claimed.append(
            DueDelivery(
                id=delivery.id,
                result_id=result.id,
                seg_sop_instance_uid=result.seg_sop_instance_uid,
                path=result.path,
                destination=_destination_info(destination),
                attempts=delivery.attempts,
                report_path=result.report_path,
            )
        )
    session.flush()
    return claimed


def record_delivery_attempt(
    session: Session,
    delivery_id: int,
    *,
    now: dt.datetime,
    succeeded: bool,
    status_code: int | None = None,
    error: str | None = None,
    next_attempt_at: dt.datetime | None = None,
) -> DeliveryStatus:
    """Record one attempt and return the new status.

    Succeeded: ``succeeded`` (``error`` may carry a warning). Failed with ``next_attempt_at``:
    ``failed``, retried then. Failed without it: ``dead``, with ``error`` as the reason.
    """
    if succeeded:
        status = DeliveryStatus.SUCCEEDED
    elif next_attempt_at is not None:
        status = DeliveryStatus.FAILED
    else:
        status = DeliveryStatus.DEAD
    session.execute(
        sa.update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(
            attempts=Delivery.attempts + 1,
            status=status.value,
            last_status=status_code,
            last_error=error,
            next_attempt_at=None if succeeded else next_attempt_at,
            updated_at=now,
            delivered_at=now if succeeded else None,
        )
    )
    return status


def get_delivery(session: Session, delivery_id: int) -> Delivery:
    """The delivery row (raises ``NoResultFound`` if there is none)."""
    return session.execute(sa.select(Delivery).where(Delivery.id == delivery_id)).scalar_one()


def dead_deliveries(session: Session, *, limit: int = 100) -> list[Delivery]:
    """The dead-letter deliveries, newest first (for the API)."""
    return list(
        session.execute(
            sa.select(Delivery)
            .where(Delivery.status == DeliveryStatus.DEAD)
            .order_by(Delivery.updated_at.desc())
            .limit(limit)
        ).scalars()
    )


def delivery_states(
    session: Session, ids: list[int]
) -> dict[int, tuple[DeliveryStatus, dt.datetime | None]]:
    """``{id: (status, next_attempt_at)}`` for the given deliveries (missing ids are absent)."""
    rows = session.execute(
        sa.select(Delivery.id, Delivery.status, Delivery.next_attempt_at).where(
            Delivery.id.in_(ids)
        )
    ).all()
    return {int(i): (DeliveryStatus(s), n) for i, s, n in rows}


def list_destinations(session: Session) -> list[Destination]:
    return list(session.execute(sa.select(Destination).order_by(Destination.name)).scalars())
