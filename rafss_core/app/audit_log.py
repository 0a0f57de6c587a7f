"""Use case: read the audit log."""

from __future__ import annotations

from rafss_core.app.context import App
from rafss_core.app.views import AuditView
from rafss_core.store.repositories.audit import list_audit as _list_audit


def list_audit(app: App, *, actor: str | None = None, action: str | None = None,
               object_type: str | None = None, object_id: str | None = None,
               limit: int = 100, offset: int = 0) -> list[AuditView]:
    """Audit rows newest first, filtered by exact actor, action and object."""
    if not 0 < limit <= 1000 or offset < 0:
        raise ValueError("limit must be 1 to 1000 and offset not negative")
    with app.sessions() as s:
        return [AuditView(e.id, e.at, e.actor, e.action, e.object_type, e.object_id,
                          dict(e.details or {}))
                for e in _list_audit(s, actor=actor or None, action=action or None,
                                     object_type=object_type or None,
                                     object_id=object_id or None, limit=limit,
                                     offset=offset)]
