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


def _parse_address(address: str, protocol: str) -> tuple[str | None, str, int, str | None]:
    """``(ae_title, host, port, url)`` of a destination address for its protocol."""
    if protocol == "c-store":
        m = ADDRESS.fullmatch(address)
        if not m or not 0 < int(m.group(3)) < 65536:
            raise ValueError(f"destination {address!r} must look like AET@HOST:PORT, e.g. "
                             "PACS@10.0.0.5:104")
        return m.group(1), m.group(2), int(m.group(3)), None
    if protocol == "stow-rs":
        from urllib.parse import urlsplit

        url = urlsplit(address)
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            port = 0
        if url.scheme not in ("http", "https") or not url.hostname or not 0 < port < 65536:
            raise ValueError(f"destination {address!r} must be a DICOMweb base URL such as "
                             "https://pacs.example/dicom-web")
        if url.username or url.password:
            raise ValueError("put no credentials in a destination URL (every role can read "
                             "destinations); use a network-level or TLS-client trust")
        return None, url.hostname, port, address.rstrip("/")
    raise ValueError(f"unknown protocol {protocol!r}; use c-store or stow-rs")


def add_destination(app: App, actor: str, *, name: str, address: str, tls: bool = False,
                    tls_ca: str | None = None, protocol: str = "c-store") -> DestinationView:
    """Add (or update) a destination: C-STORE ``AET@HOST:PORT``, or STOW-RS to a DICOMweb
    base URL (``protocol="stow-rs"``).

    Raises:
        ValueError: the address does not parse for the protocol, or a bad name.
    """
    ae_title, host, port, url = _parse_address(address, protocol)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ValueError(f"destination name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    with app.sessions.begin() as s:
        dest_id = _add_destination(s, name=name, ae_title=ae_title, host=host, port=port,
                                   protocol=protocol, url=url, tls_enabled=tls,
                                   tls_ca_file=tls_ca)
        audit(s, actor=actor, action="destination.add", object_type="destination",
              object_id=dest_id, details={"name": name, "address": address, "tls": tls,
                                          "protocol": protocol})
    return DestinationView(dest_id, name, ae_title, host, port, tls, True, protocol, url)


def list_destinations(app: App) -> list[DestinationView]:
    with app.sessions() as s:
        return [DestinationView(d.id, d.name, d.ae_title.strip() if d.ae_title else None,
                                d.host, d.port, d.tls_enabled, d.enabled, d.protocol, d.url)
                for d in _list_destinations(s)]
