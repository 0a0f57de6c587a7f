"""The audit log: every curation change writes one row in the same transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.models import AuditEntry


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: object,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an audit row. ``details`` must not carry PHI (UIDs and ids are fine)."""
    entry = AuditEntry(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
    )
    session.add(entry)
    session.flush()
    return entry


def list_audit(session: Session, *, actor: str | None = None, action: str | None = None,
               object_type: str | None = None, object_id: str | None = None,
               limit: int = 100, offset: int = 0) -> list[AuditEntry]:
    """Audit rows, newest first; every filter is an exact match on a bound parameter."""
    q = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action),
                          (AuditEntry.object_type, object_type),
                          (AuditEntry.object_id, object_id)):
        if value is not None:
            q = q.where(column == value)
    return list(session.execute(q).scalars())
