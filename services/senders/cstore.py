"""C-STORE delivery (the Storage SCU): one association per destination per batch.

Each C-STORE response is classified:

- ``0x0000`` success, and the warnings ``0xB000`` (coercion of data elements), ``0xB006``
  (elements discarded) and ``0xB007`` (data set does not match SOP class): delivered; a
  warning is kept in the error so it is visible;
- *permanent* failures, where resending the same file cannot help: ``0x0122`` (SOP class not
  supported), ``0xA9xx`` (data set does not match SOP class), no accepted presentation context
  for the file's SOP class, and a result file that is missing or unreadable;
- every other failure (``0xA7xx`` out of resources, ``0xCxxx`` cannot understand, ``0x0110``
  processing failure, connection refused, association rejected or aborted, timeouts): retried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from rafss_core.store.repositories.deliveries import DestinationInfo
from services.senders import SendOutcome
from services.tls import client_context

SUCCESS = 0x0000
WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})
MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association


@dataclass(frozen=True)
class ScuOptions:
    calling_ae: str = "RAFSS"
    acse_timeout: float = 30.0
    dimse_timeout: float = 120.0
    network_timeout: float = 60.0
    connection_timeout: float | None = 10.0


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one file: the DIMSE status (None without a response) and any error."""

    path: str
    status: int | None
    error: str | None = None
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and (
            self.status == SUCCESS or self.status in WARNING_STATUSES
        )


def is_permanent_status(status: int) -> bool:
    return status == 0x0122 or 0xA900 <= status <= 0xA9FF


def _read(path: str) -> Dataset | StoreOutcome:
    if not Path(path).is_file():
        return StoreOutcome(path, None, "result file missing; re-run the job", permanent=True)
    try:
        return dcmread(path)
    except Exception as exc:
        return StoreOutcome(
            path, None, f"result file unreadable ({type(exc).__name__})", permanent=True
        )


def _associate(destination: DestinationInfo, ae: AE) -> Association:
    tls_args = None
    if destination.tls_enabled:
        context = client_context(
            destination.tls_ca_file,
            cert_file=destination.tls_cert_file,
            key_file=destination.tls_key_file,
            verify_hostname=destination.tls_verify_hostname,
        )
        tls_args = (context, destination.host)
    return ae.associate(
        destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args
    )


def _association_error(assoc: Association, destination: DestinationInfo) -> tuple[str, bool]:
    """Why the association failed, and whether retrying cannot help."""
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    if assoc.is_rejected:
        return f"association rejected by {where}; check the destination's AE allow-list", False
    if assoc.acceptor.primitive is None:  # no A-ASSOCIATE-AC/RJ came back
        return f"cannot connect to {where}: down, unreachable or TLS handshake failed", False
    if not assoc.accepted_contexts and assoc.rejected_contexts:
        return f"{where} does not accept this SOP class or transfer syntax", True
    return f"association aborted by {where}; check the destination's log", False


def send_files(
    destination: DestinationInfo, paths: Sequence[str], options: ScuOptions | None = None
) -> list[StoreOutcome]:
    """C-STORE ``paths`` to ``destination`` over one association; one outcome per path."""
    options = options or ScuOptions()
    outcomes: dict[str, StoreOutcome] = {}
    datasets: dict[str, Dataset] = {}
    for path in paths:
        read = _read(path)
        if isinstance(read, StoreOutcome):
            outcomes[path] = read
        else:
            datasets[path] = read
    if datasets:
        outcomes.update(_send_datasets(destination, datasets, options))
    return [outcomes[p] for p in paths]


def _send_datasets(
    destination: DestinationInfo, datasets: dict[str, Dataset], options: ScuOptions
) -> dict[str, StoreOutcome]:
    ae = AE(ae_title=options.calling_ae)
    ae.acse_timeout = options.acse_timeout
    ae.dimse_timeout = options.dimse_timeout
    ae.network_timeout = options.network_timeout
    ae.connection_timeout = options.connection_timeout
    syntaxes: dict[str, list[str]] = defaultdict(list)
    for ds in datasets.values():
        wanted = [str(ds.file_meta.TransferSyntaxUID), ExplicitVRLittleEndian]
        wanted.append(ImplicitVRLittleEndian)
        for ts in wanted:
            if ts not in syntaxes[str(ds.SOPClassUID)]:
                syntaxes[str(ds.SOPClassUID)].append(ts)
    if len(syntaxes) > MAX_CONTEXTS:
        raise ValueError(f"{len(syntaxes)} SOP classes in one batch; split it (max 128)")
    for sop_class, ts_list in syntaxes.items():
        ae.add_requested_context(sop_class, ts_list)
    assoc = _associate(destination, ae)
    if not assoc.is_established:
        error, permanent = _association_error(assoc, destination)
        return {p: StoreOutcome(p, None, error, permanent) for p in datasets}
    outcomes: dict[str, StoreOutcome] = {}
    try:
        for path, ds in datasets.items():
            outcomes[path] = _store_one(assoc, path, ds, destination)
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    aborted = "association lost before this file was sent; will retry"
    return {p: outcomes.get(p, StoreOutcome(p, None, aborted)) for p in datasets}


def _store_one(
    assoc: Association, path: str, ds: Dataset, destination: DestinationInfo
) -> StoreOutcome:
    try:
        response = assoc.send_c_store(ds)
    except ValueError as exc:  # no accepted presentation context for this SOP class / syntax
        return StoreOutcome(
            path,
            None,
            f"{destination.ae_title} does not accept this SOP class or transfer syntax ({exc})",
            permanent=True,
        )
    status = response.get("Status") if response else None
    if status is None:
        return StoreOutcome(path, None, "no response (timeout or abort); will retry")
    status = int(status)
    comment = str(response.get("ErrorComment", "")).strip()
    if status == SUCCESS:
        return StoreOutcome(path, status)
    detail = f"status 0x{status:04X}" + (f": {comment}" if comment else "")
    if status in WARNING_STATUSES:
        return StoreOutcome(path, status, f"delivered with warning {detail}")
    return StoreOutcome(path, status, f"refused with {detail}", is_permanent_status(status))


class CStoreSender:
    """The :class:`~services.senders.Sender` for DIMSE C-STORE destinations."""

    protocol = "c-store"

    def __init__(self, options: ScuOptions | None = None) -> None:
        self.options = options or ScuOptions()

    def send(self, destination: DestinationInfo, paths: Sequence[str]) -> list[SendOutcome]:
        return [SendOutcome(o.path, o.status, o.delivered, o.error, o.permanent)
                for o in send_files(destination, paths, self.options)]
