"""Delivery of results (the DICOM-SEG and its volume report) to destinations, with retries.

The destination's protocol picks the :class:`~services.senders.Sender` (C-STORE:
:mod:`services.senders.cstore`, one association per destination per batch; STOW-RS:
:mod:`services.senders.stowrs`), which classifies each file's outcome as delivered, a
*permanent* failure (the delivery goes dead at once with the reason) or a transient one
(retried with exponential backoff; after ``max_attempts`` the delivery is dead). A delivery
succeeds when all of its files are delivered.

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

from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import DeliveryStatus
from rafss_core.store.repositories.deliveries import (
    DueDelivery,
    delivery_states,
    due_deliveries,
    record_delivery_attempt,
)
from services.senders import Sender, SendOutcome, sender_for
from services.senders.cstore import (  # re-exported: the C-STORE sender's names
    SUCCESS,
    WARNING_STATUSES,
    CStoreSender,
    ScuOptions,
    StoreOutcome,
    is_permanent_status,
    send_files,
)

LOG = logging.getLogger("rafss.scu")

FINAL_STATUSES = frozenset({DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD})
__all__ = ["SUCCESS", "WARNING_STATUSES", "ScuOptions", "StoreOutcome", "attempt_delivery",
           "deliver", "deliver_due", "is_permanent_status", "send_files"]


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
class DeliveryOutcome:
    delivery_id: int
    status: DeliveryStatus
    status_code: int | None  # DIMSE status (C-STORE) or HTTP status / FailureReason (STOW-RS)
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
    """Send claimed deliveries (one batch per destination, with the destination's protocol)
    and record every attempt."""
    policy = policy or RetryPolicy()
    now = now or _utcnow()
    by_destination: dict[int, list[DueDelivery]] = defaultdict(list)
    for item in due:
        by_destination[item.destination.id].append(item)
    results: list[DeliveryOutcome] = []
    for items in by_destination.values():
        destination = items[0].destination
        sender = _sender(destination.protocol, options)
        paths = [p for i in items for p in i.paths]
        sent = dict(zip(paths, sender.send(destination, paths), strict=True))
        with session_factory.begin() as session:
            for item in items:
                outcome = _combined([sent[p] for p in item.paths])
                results.append(_record(session, item, outcome, policy, now))
    return results


def _sender(protocol: str, options: ScuOptions | None) -> Sender:
    return CStoreSender(options) if protocol == CStoreSender.protocol else sender_for(protocol)


def _combined(outcomes: list[SendOutcome]) -> SendOutcome:
    """One delivery's outcome from its files': delivered when all are; else the first
    failure, permanent when any failure is."""
    failures = [o for o in outcomes if not o.delivered]
    if not failures:
        warnings = "; ".join(o.error for o in outcomes if o.error)
        return SendOutcome(outcomes[0].path, outcomes[0].status, True, warnings or None)
    first = failures[0]
    return SendOutcome(first.path, first.status, False, first.error,
                       any(o.permanent for o in failures))


def _record(
    session: Session,
    item: DueDelivery,
    outcome: SendOutcome,
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
        status_code=outcome.status,
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
