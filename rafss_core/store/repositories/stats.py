"""Operational figures read from the rows (what the Prometheus collector exposes).

The SCP, the workers and the loops may run in different processes; the rows are the single
source of truth, so the figures are counted at read time instead of kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import DeliveryStatus, InstanceState, JobKind, JobState

_RECEIVED = sa.text("SELECT count(*) FROM instances")
_INVALID = sa.text("SELECT count(*) FROM instances WHERE state = :invalid")
_JOBS = sa.text("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")
_LATENCIES = sa.text(
    "SELECT extract(epoch FROM finished_at - created_at) FROM jobs "
    "WHERE kind = :segment AND state = :succeeded AND finished_at IS NOT NULL"
)
_DELIVERY_FAILURES = sa.text(
    "SELECT coalesce(sum(GREATEST(attempts - CASE WHEN status = :succeeded "
    "THEN 1 ELSE 0 END, 0)), 0) FROM deliveries"
)
_DEAD_DELIVERIES = sa.text("SELECT count(*) FROM deliveries WHERE status = :dead")


@dataclass(frozen=True)
class ServiceStats:
    """The figures, all counted over the whole database.

    ``jobs`` counts jobs by ``(kind, state)``. ``latencies`` are the queued-to-finished seconds
    of each succeeded *segmentation* job; ``latency_sum`` is their exact sum.
    ``delivery_failures`` counts failed delivery attempts (every attempt but the one that
    succeeded).
    """

    received: int
    invalid: int
    jobs: dict[tuple[str, str], int]
    latencies: tuple[float, ...]
    latency_sum: float
    delivery_failures: int
    dead_deliveries: int


def service_stats(session: Session) -> ServiceStats:
    """Count instances, jobs and deliveries (read-only)."""
    received = session.execute(_RECEIVED).scalar_one()
    invalid = session.execute(_INVALID, {"invalid": InstanceState.INVALID.value}).scalar_one()
    jobs = {(str(kind), str(state)): int(n)
            for kind, state, n in session.execute(_JOBS).all()}
    latencies = session.execute(
        _LATENCIES, {"segment": JobKind.SEGMENT.value, "succeeded": JobState.SUCCEEDED.value}
    ).scalars().all()
    failures = session.execute(
        _DELIVERY_FAILURES, {"succeeded": DeliveryStatus.SUCCEEDED.value}
    ).scalar_one()
    dead = session.execute(_DEAD_DELIVERIES, {"dead": DeliveryStatus.DEAD.value}).scalar_one()
    return ServiceStats(
        received=int(received),
        invalid=int(invalid),
        jobs=jobs,
        latencies=tuple(float(x) for x in latencies),
        latency_sum=float(sum(latencies)),
        delivery_failures=int(failures),
        dead_deliveries=int(dead),
    )
