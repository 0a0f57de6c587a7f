"""The AE allow-list: which calling AE titles (and optionally IP addresses) may store to us.

An ``allowed_sources`` row with ``ip`` NULL admits its AE title from any address; with an
address (or a network such as ``10.1.0.0/16``) it admits the AE title only from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from rafss_core.store.models import AllowedSource


@dataclass(frozen=True)
class AllowedSourceEntry:
    """One enabled allow-list entry; ``ip`` is an address or CIDR network, or None for any."""

    ae_title: str
    ip: str | None


def list_allowed_sources(session: Session) -> list[AllowedSourceEntry]:
    """Every *enabled* allow-list entry."""
    rows = session.execute(
        sa.select(AllowedSource.ae_title, AllowedSource.ip).where(AllowedSource.enabled)
    ).all()
    return [
        AllowedSourceEntry(ae_title=ae.strip(), ip=None if ip is None else str(ip))
        for ae, ip in rows
    ]


def add_allowed_source(
    session: Session,
    ae_title: str,
    *,
    ip: str | None = None,
    description: str | None = None,
    series_quiet_seconds: int | None = None,
) -> int:
    """Allow ``ae_title`` (from ``ip``, or from anywhere); re-enables an existing entry."""
    ae_title = ae_title.strip()
    if not ae_title or len(ae_title) > 16:
        raise ValueError(f"AE title {ae_title!r} must be 1 to 16 characters")
    stmt = (
        pg_insert(AllowedSource)
        .values(
            ae_title=ae_title,
            ip=ip,
            description=description,
            series_quiet_seconds=series_quiet_seconds,
            enabled=True,
        )
        .on_conflict_do_update(
            index_elements=["ae_title", "ip"],
            set_={"enabled": True, "description": description},
        )
        .returning(AllowedSource.id)
    )
    return int(session.execute(stmt).scalar_one())


def disable_allowed_source(session: Session, ae_title: str, *, ip: str | None = None) -> bool:
    """Disable the entry for ``(ae_title, ip)``; True if one was enabled."""
    ip_match = AllowedSource.ip.is_(None) if ip is None else AllowedSource.ip == ip
    result = session.execute(
        sa.update(AllowedSource)
        .where(AllowedSource.ae_title == ae_title.strip(), ip_match, AllowedSource.enabled)
        .values(enabled=False)
    )
    return bool(result.rowcount)


def all_allowed_sources(session: Session) -> list[AllowedSource]:
    """Every allow-list row, enabled or not (for the admin views)."""
    return list(session.execute(
        sa.select(AllowedSource).order_by(AllowedSource.ae_title, AllowedSource.id)).scalars())
