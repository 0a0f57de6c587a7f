"""DICOM TLS (PS3.15 B.1 "secure transport"): TLS 1.2 or newer, certificates from PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsServerConfig:
    """The SCP's certificate and key; ``ca_file`` + ``require_client_cert`` for mutual TLS."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False


def server_context(config: TlsServerConfig) -> ssl.SSLContext:
    """A server-side context refusing anything older than TLS 1.2."""
    if config.require_client_cert and config.ca_file is None:
        raise ValueError("require_client_cert needs ca_file: set the CA that signs clients")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(config.cert_file), keyfile=str(config.key_file))
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    if config.require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca_file: str | Path | None,
    *,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    verify_hostname: bool = True,
) -> ssl.SSLContext:
    """A client-side context (TLS 1.2+) verifying the peer against ``ca_file``.

    Without ``ca_file`` the system trust store is used. ``cert_file``/``key_file`` present a
    client certificate to peers that require one.
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file)
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = verify_hostname
    if cert_file is not None:
        context.load_cert_chain(
            certfile=str(cert_file), keyfile=None if key_file is None else str(key_file)
        )
    return context
