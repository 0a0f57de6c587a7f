"""The Storage SCU: delivers results (DICOM-SEG files) to destinations, with retries.

One association per destination per batch. Each C-STORE response is classified:

- ``0x0000`` success, and the warnings ``0xB000`` (coercion of data elements), ``0xB006``
  (elements discarded) and ``0xB007`` (data set does not match SOP class): delivered; a
  warning is kept in ``last_error`` so it is visible;
- *permanent* failures, where resending the same file cannot help: ``0x0122`` (SOP class not
  supported), ``0xA9xx`` (data set does not match SOP class), no accepted presentation context
  for the file's SOP class, and a result file that is missing or unreadable: the delivery goes
  dead at once with the reason;
- every other failure (``0xA7xx`` out of resources, ``0xCxxx`` cannot understand, ``0x0110``
  processing failure, connection refused, association rejected or aborted, timeouts):
  retried with exponential backoff; after ``max_attempts`` the delivery is dead.

The schedule is in the ``deliveries`` table (see :mod:`rafss_core.store.repositories.deliveries`):
a periodic worker calls :func:`deliver_due`; :func:`deliver` is a blocking helper that runs the
same steps until the given deliveries are settled.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import DeliveryStatus
from rafss_core.store.repositories.deliveries import (
    DestinationInfo,
    DueDelivery,
    delivery_states,
    due_deliveries,
    record_delivery_attempt,
)
from services.tls import client_context

LOG = logging.getLogger("rafss.scu")

SUCCESS = 0x0000
WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})
FINAL_STATUSES = frozenset({DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD})
MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the n-th failed attempt waits ``base * factor**(n-1)`` (capped)."""

    base_seconds: float = 30.0
    factor: float = 2.0
    max_attempts: int = 8
    max_delay_seconds: float = 3600.0

    def delay_after(self, attempts: int) -> dt.timedelta:
        """The wait after ``attempts`` failed attempts (``attempts >= 1``)."""
        seconds = self.base_seconds * self.factor ** max(attempts - 1, 0)
        return dt.timedelta(seconds=min(seconds, self.max_delay_seconds))


@dataclass(frozen=True)
class ScuOptions:
    calling_ae: str = "RAFSS"
    acse_timeout: float = 30.0
    dimse_timeout: float = 120.0
    network_timeout: float = 60.0
    connection_timeout: float | None = 10.0


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one file: the DIMSE status (None without a response) and any error."""

    path: str
    status: int | None
    error: str | None = None
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and (
            self.status == SUCCESS or self.status in WARNING_STATUSES
        )


def is_permanent_status(status: int) -> bool:
    return status == 0x0122 or 0xA900 <= status <= 0xA9FF


def _read(path: str) -> Dataset | StoreOutcome:
    if not Path(path).is_file():
        return StoreOutcome(path, None, "result file missing; re-run the job", permanent=True)
    try:
        return dcmread(path)
    except Exception as exc:
        return StoreOutcome(
            path, None, f"result file unreadable ({type(exc).__name__})", permanent=True
        )


def _associate(destination: DestinationInfo, ae: AE) -> Association:
    tls_args = None
    if destination.tls_enabled:
        context = client_context(
            destination.tls_ca_file,
            cert_file=destination.tls_cert_file,
            key_file=destination.tls_key_file,
            verify_hostname=destination.tls_verify_hostname,
        )
        tls_args = (context, destination.host)
    return ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args
    )


def _association_error(assoc: Association, destination: DestinationInfo) -> tuple[str, bool]:
    """Why the association failed, and whether retrying cannot help."""
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    if assoc.is_rejected:
        return f"association rejected by {where}; check the destination's AE allow-list", False
    if assoc.acceptor.primitive is None:  # no A-ASSOCIATE-AC/RJ came back
        return f"cannot connect to {where}: down, unreachable or TLS handshake failed", False
    if not assoc.accepted_contexts and assoc.rejected_contexts:
        return f"{where} does not accept this SOP class or transfer syntax", True
    return f"association aborted by {where}; check the destination's log", False


def send_files(
    destination: DestinationInfo, paths: Sequence[str], options: ScuOptions | None = None
) -> list[StoreOutcome]:
    """C-STORE ``paths`` to ``destination`` over one association; one outcome per path."""
    options = options or ScuOptions()
    outcomes: dict[str, StoreOutcome] = {}
    datasets: dict[str, Dataset] = {}
    for path in paths:
        read = _read(path)
        if isinstance(read, StoreOutcome):
            outcomes[path] = read
        else:
            datasets[path] = read
    if datasets:
        outcomes.update(_send_datasets(destination, datasets, options))
    return [outcomes[p] for p in paths]


def _send_datasets(
    destination: DestinationInfo, datasets: dict[str, Dataset], options: ScuOptions
) -> dict[str, StoreOutcome]:
    ae = AE(ae_title=options.calling_ae)
    ae.acse_timeout = options.acse_timeout
    ae.dimse_timeout = options.dimse_timeout
    ae.network_timeout = options.network_timeout
    ae.connection_timeout = options.connection_timeout
    syntaxes: dict[str, list[str]] = defaultdict(list)
    for ds in datasets.values():
        wanted = [str(ds.file_meta.TransferSyntaxUID), ExplicitVRLittleEndian]
        wanted.append(ImplicitVRLittleEndian)
        for ts in wanted:
            if ts not in syntaxes[str(ds.SOPClassUID)]:
                syntaxes[str(ds.SOPClassUID)].append(ts)
    if len(syntaxes) > MAX_CONTEXTS:
        raise ValueError(f"{len(syntaxes)} SOP classes in one batch; split it (max 128)")
    for sop_class, ts_list in syntaxes.items():
        ae.add_requested_context(sop_class, ts_list)
    assoc = _associate(destination, ae)
    if not assoc.is_established:
        error, permanent = _association_error(assoc, destination)
        return {p: StoreOutcome(p, None, error, permanent) for p in datasets}
    outcomes: dict[str, StoreOutcome] = {}
    try:
        for path, ds in datasets.items():
            outcomes[path] = _store_one(assoc, path, ds, destination)
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    aborted = "association lost before this file was sent; will retry"
    return {p: outcomes.get(p, StoreOutcome(p, None, aborted)) for p in datasets}


def _store_one(
    assoc: Association, path: str, ds: Dataset, destination: DestinationInfo
) -> StoreOutcome:
    try:
        response = assoc.send_c_store(ds)
    except ValueError as exc:  # no accepted presentation context for this SOP class / syntax
        return StoreOutcome(
            path,
            None,
            f"{destination.ae_title} does not accept this SOP class or transfer syntax ({exc})",
            permanent=True,
        )
    status = response.get("Status") if response else None
    if status is None:
        return StoreOutcome(path, None, "no response (timeout or abort); will retry")
    status = int(status)
    comment = str(response.get("ErrorComment", "")).strip()
    if status == SUCCESS:
        return StoreOutcome(path, status)
    detail = f"status 0x{status:04X}" + (f": {comment}" if comment else "")
    if status in WARNING_STATUSES:
        return StoreOutcome(path, status, f"delivered with warning {detail}")
    return StoreOutcome(path, status, f"refused with {detail}", is_permanent_status(status))


@dataclass(frozen=True)
class DeliveryOutcome:
    delivery_id: int
    status: DeliveryStatus
    dimse_status: int | None
    error: str | None
    next_attempt_at: dt.datetime | None


def attempt_delivery(
    session_factory: sessionmaker[Session],
    due: Sequence[DueDelivery],
    *,
    policy: RetryPolicy | None = None,
    options: ScuOptions | None = None,
    now: dt.datetime | None = None,
) -> list[DeliveryOutcome]:
    """Send claimed deliveries (one association per destination) and record every attempt."""
    policy = policy or RetryPolicy()
    now = now or _utcnow()
    by_destination: dict[int, list[DueDelivery]] = defaultdict(list)
    for item in due:
        by_destination[item.destination.id].append(item)
    results: list[DeliveryOutcome] = []
    for items in by_destination.values():
        sent = send_files(items[0].destination, [i.path for i in items], options)
        with session_factory.begin() as session:
            for item, outcome in zip(items, sent, strict=True):
                results.append(_record(session, item, outcome, policy, now))
    return results


def _record(
    session: Session,
    item: DueDelivery,
    outcome: StoreOutcome,
    policy: RetryPolicy,
    now: dt.datetime,
) -> DeliveryOutcome:
    attempts = item.attempts + 1
    next_at = None
    error = outcome.error
    if not outcome.delivered and not outcome.permanent:
        if attempts < policy.max_attempts:
            next_at = now + policy.delay_after(attempts)
        else:
            error = f"gave up after {attempts} attempts; last: {outcome.error}"
    status = record_delivery_attempt(
        session,
        item.id,
        now=now,
        succeeded=outcome.delivered,
        dimse_status=outcome.status,
        error=error,
        next_attempt_at=next_at,
    )
    log = LOG.info if outcome.delivered else LOG.warning
    log(
        "delivery %d of SEG %s to %s: %s (attempt %d)%s",
        item.id,
        item.seg_sop_instance_uid,
        item.destination.name,
        status.value,
        attempts,
        f": {error}" if error else "",
    )
    return DeliveryOutcome(item.id, status, outcome.status, error, next_at)


def deliver_due(
    session_factory: sessionmaker[Session],
    *,
    now: dt.datetime | None = None,
    policy: RetryPolicy | None = None,
    options: ScuOptions | None = None,
    limit: int = 100,
    ids: list[int] | None = None,
) -> list[DeliveryOutcome]:
    """One pass of the delivery worker: claim what is due at ``now`` and attempt it."""
    now = now or _utcnow()
    with session_factory.begin() as session:
        due = due_deliveries(session, now, limit=limit, ids=ids)
    if not due:
        return []
    return attempt_delivery(session_factory, due, policy=policy, options=options, now=now)


def deliver(
    session_factory: sessionmaker[Session],
    delivery_ids: Sequence[int],
    *,
    policy: RetryPolicy | None = None,
    options: ScuOptions | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], dt.datetime] = _utcnow,
    timeout: dt.timedelta | None = None,
) -> dict[int, DeliveryStatus]:
    """Blocking: attempt the given deliveries until each has succeeded or is dead.

    Raises ``TimeoutError`` if ``timeout`` passes first (e.g. a disabled destination).

    It runs the same claim / attempt / record steps as the periodic worker, sleeping until the
    earliest ``next_attempt_at`` in between, so every attempt is in the table.
    """
    ids = sorted(set(delivery_ids))
    deadline = None if timeout is None else clock() + timeout
    while True:
        with session_factory() as session:
            states = delivery_states(session, ids)
        missing = set(ids) - set(states)
        if missing:
            raise ValueError(f"no such deliveries: {sorted(missing)}")
        pending = [i for i, (status, _) in states.items() if status not in FINAL_STATUSES]
        if not pending:
            return {i: status for i, (status, _) in states.items()}
        now = clock()
        if deadline is not None and now >= deadline:
            raise TimeoutError(f"deliveries {pending} not settled; see their last_error")
        if any(n is None or n <= now for _, n in (states[i] for i in pending)) and deliver_due(
            session_factory, now=now, policy=policy, options=options, ids=pending
        ):
            continue
        upcoming = [n for _, n in (states[i] for i in pending) if n is not None and n > now]
        wake = min(upcoming, default=now + dt.timedelta(seconds=1))
        sleep(max((wake - now).total_seconds(), 0.01))
