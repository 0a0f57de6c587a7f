"""Routing's reads: closed series to route, enabled rules, a series' instances."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import SeriesState
from rafss_core.store.models import Instance, RoutingRule, Series, Task


def lock_closed_series(session: Session, limit: int) -> list[Series]:
    """Closed series, oldest first, locked (SKIP LOCKED: several routers never collide)."""
    return list(session.execute(
        sa.select(Series).where(Series.state == SeriesState.CLOSED.value)
        .order_by(Series.closed_at).limit(limit).with_for_update(skip_locked=True)
    ).scalars())


def enabled_rules(session: Session) -> list[RoutingRule]:
    return list(session.execute(
        sa.select(RoutingRule).join(Task, Task.id == RoutingRule.task_id)
        .where(RoutingRule.enabled, Task.enabled)
        .order_by(RoutingRule.priority, RoutingRule.id)).scalars())


def series_instances(session: Session, series_id: int) -> list[tuple[str, str, str]]:
    """``(sop_instance_uid, sop_class_uid, spool_path)`` of a series' instances."""
    return [(u, c, p) for u, c, p in session.execute(
        sa.select(Instance.sop_instance_uid, Instance.sop_class_uid, Instance.spool_path)
        .where(Instance.series_id == series_id).order_by(Instance.id)).all()]
