"""Use cases: the DICOM peers, i.e. allowed sources and result destinations."""

from __future__ import annotations

import re

from rafss_core.app.context import App
from rafss_core.app.views import DestinationView, SourceView
from rafss_core.store.repositories import audit
from rafss_core.store.repositories.deliveries import add_destination as _add_destination
from rafss_core.store.repositories.deliveries import list_destinations as _list_destinations
from rafss_core.store.repositories.sources import add_allowed_source, all_allowed_sources

ADDRESS = re.compile(r"([^@\s]{1,16})@([A-Za-z0-9.\-:\[\]]+):(\d{1,5})")


def allow_source(app: App, actor: str, *, ae_title: str, ip: str | None = None,
                 quiet_seconds: int | None = None) -> SourceView:
    """Allow a calling AE title (optionally only from one address or network).

    Raises:
        ValueError: a bad AE title, address or quiet period.
    """
    if quiet_seconds is not None and not 0 < quiet_seconds <= 86400:
        raise ValueError("quiet seconds must be 1 to 86400")
    if ip is not None:
        import ipaddress

        try:
            ipaddress.ip_network(ip, strict=False)
        except ValueError:
            raise ValueError(f"{ip!r} is not an IP address or network") from None
    with app.sessions.begin() as s:
        source_id = add_allowed_source(s, ae_title, ip=ip, series_quiet_seconds=quiet_seconds)
        audit(s, actor=actor, action="source.allow", object_type="allowed_source",
              object_id=source_id, details={"ae_title": ae_title, "ip": ip})
    return SourceView(source_id, ae_title.strip(), ip, quiet_seconds, True)


def list_sources(app: App) -> list[SourceView]:
    with app.sessions() as s:
        return [SourceView(r.id, r.ae_title.strip(), None if r.ip is None else str(r.ip),
                           r.series_quiet_seconds, r.enabled) for r in all_allowed_sources(s)]


def add_destination(app: App, actor: str, *, name: str, address: str, tls: bool = False,
                    tls_ca: str | None = None) -> DestinationView:
    """Add (or update) a C-STORE destination ``AET@HOST:PORT``.

    Raises:
        ValueError: the address does not parse, or a bad name.
    """
    m = ADDRESS.fullmatch(address)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"destination {address!r} must look like AET@HOST:PORT, e.g. "
                         "PACS@10.0.0.5:104")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ValueError(f"destination name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    with app.sessions.begin() as s:
        dest_id = _add_destination(s, name=name, ae_title=m.group(1), host=m.group(2),
                                   port=int(m.group(3)), tls_enabled=tls, tls_ca_file=tls_ca)
        audit(s, actor=actor, action="destination.add", object_type="destination",
              object_id=dest_id, details={"name": name, "address": address, "tls": tls})
    return DestinationView(dest_id, name, m.group(1), m.group(2), int(m.group(3)), tls, True)


def list_destinations(app: App) -> list[DestinationView]:
    with app.sessions() as s:
        return [DestinationView(d.id, d.name, d.ae_title.strip(), d.host, d.port,
                                d.tls_enabled, d.enabled) for d in _list_destinations(s)]
