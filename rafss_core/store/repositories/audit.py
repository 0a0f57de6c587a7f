"""The audit log: every curation change writes one row in the same transaction."""

from __future__ import annotations

from typing import Any

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
