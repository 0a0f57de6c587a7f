"""The Storage SCP: receives C-STORE requests, spools them atomically and records them.

DIMSE statuses the C-STORE handler answers (PS3.4 B.2.3), and what the sender sees:

- ``0x0000`` success: the file is durably in the spool *and* recorded in the database (the
  row is committed; see below for why its WAL flush may trail by a fraction of a second). A
  duplicate (same SOPInstanceUID) is a success too; the file is replaced atomically by the
  resent one and no row is added.
- ``0xB007`` warning, "data set does not match SOP class": stored and recorded, but marked
  ``invalid`` (pixel data length disagreeing with Rows/Columns/BitsAllocated, an image without
  pixel data, absurd dimensions, malformed geometry). Nothing downstream segments it.
- ``0xA700`` failure, "out of resources": the spool disk is full or unwritable, *or the
  database is unavailable*. In the database case the file is already durably in the spool; the
  sender sees a failure and will normally retry (storescu reports it, a PACS queues a resend),
  and :func:`reconcile_spool` records spooled-but-unrecorded files once the database answers
  again (the SCP starts it in the background), so a file that was written is never lost and
  nothing is acknowledged unless it is recorded.
- ``0xA900`` failure, "data set does not match SOP class": the data set's SOPClassUID
  differs from the one in the C-STORE request.
- ``0xC210`` failure, "cannot understand": the header cannot be parsed, or a UID needed to key
  and record the instance is missing or malformed, or the SOPInstanceUID differs from the one
  in the request. The bytes are kept in the quarantine folder with the reason, for triage.

How a C-STORE is made durable, and what it costs (issue 12; profile of ``benchmarks/scp_ingest.py``
on a 2-core VM with 111 KB MR instances, per instance, one association)::

    pynetdicom (polling DUL and association reactors, PDU decode)  ~2.7 ms  no-op handler: ~370/s
    read_header (pydicom header parse, no pixels)                   ~0.4 ms
    write_atomic (temp file, fsync, rename, directory fsync)        ~1.4 ms  ext4 journal commit
    record (before: 4-5 ORM statements, BEGIN/COMMIT, pre-ping,   ~2.3 ms  (~4 ms under load)
            WAL flush; now: one statement, asynchronous commit)    ~0.4 ms

Decision: the handler stays synchronous. It fsyncs and renames the file into the spool, then
records the row with *one* ``INSERT ... ON CONFLICT`` statement (:func:`record_instance`) on the
SCP's own autocommit pool without pre-ping (:func:`~rafss_core.store.engine.scp_engine`), under
``synchronous_commit = off``; only then does it answer. So a success still means "the file is
durable in the spool and its row is visible", but the row's WAL is flushed by the WAL writer
(within ~0.6 s) instead of on the sender's time. What a crash in that window can lose is a row
whose file is durable, exactly what :func:`reconcile_spool` records: it runs when the SCP starts
(:func:`run_scp`, ``rafss up``), in the service loop, and in the background as soon as the
database answers again after a failure or a dropped connection. A batching writer thread
(acknowledge after fsync, record later) was considered and not taken: with one association the
sender waits for every answer anyway, so it could only hide the ~0.4 ms left of the record,
while it would make "success" no longer mean "recorded" and answer success while the database is
down. What is left per instance is pynetdicom's polling reactor and the two fsyncs, which
``storescp`` (no fsync, C) does not pay. With four associations the two cores are saturated
(pynetdicom's per-message Python work and polling threads, the header parse under the GIL,
Postgres, the senders); a no-op handler there reaches only ~650-730/s. The benchmark prints
the figures.

Unknown callers are refused at association (A-ASSOCIATE-RJ, permanent, "calling AE title not
recognised"); unknown SOP classes and transfer syntaxes are refused per presentation context.
The ErrorComment of a failure says what to do next. Logs carry UIDs and AE titles, never
patient names, IDs or birth dates.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, _config, evt
from pynetdicom import sop_class as sop
from pynetdicom.events import Event
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.config import Settings
from rafss_core.store.engine import scp_engine
from rafss_core.store.repositories.instances import known_sop_instance_uids, record_instance
from services.allowlist import CallerAllowList
from services.disk import DiskWatermark
from services.ingest import HeaderInfo, UnreadableInstanceError, read_header, with_spool_path
from services.spool import quarantine, spool_path, spooled_files, write_atomic
from services.tls import TlsServerConfig, server_context

LOG = logging.getLogger("rafss.scp")

SUCCESS = 0x0000
WARNING_DATASET_MISMATCH = 0xB007
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210

# pynetdicom must never log request identifiers (they may carry PHI)
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


def storage_sop_classes() -> list[str]:
    """Every storage SOP class pynetdicom knows (170 in pynetdicom 3.0)."""
    return sorted(
        {
            str(value)
            for value in vars(sop).values()
            if isinstance(value, sop.SOPClass) and value.service_class is StorageServiceClass
        }
    )


@dataclass
class ScpConfig:
    """How the SCP listens and where it stores. ``port=0`` picks a free port (tests)."""

    spool_dir: Path
    ae_title: str = "RAFSS"
    host: str = "127.0.0.1"
    port: int = 11112
    quarantine_dir: Path | None = None  # default: <spool_dir>/../quarantine
    allow_any: bool = False  # admit every caller: tests and closed lab networks only
    allowlist_ttl_seconds: float = 30.0
    require_called_aet: bool = False
    tls: TlsServerConfig | None = None
    max_associations: int = 16
    # refuse new associations below this much free space under the spool (0: never)
    min_free_disk_mb: int = 0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0

    @property
    def quarantine_path(self) -> Path:
        return self.quarantine_dir or self.spool_dir.parent / "quarantine"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ScpConfig:
        """The SCP of ``settings``: AE title, address, allow-list switch, TLS, the spool
        (``RAFSS_SPOOL_DIR`` or ``<data_dir>/spool``) and ``<data_dir>/quarantine``."""
        values: dict[str, Any] = {
            "spool_dir": settings.spool_dir,
            "quarantine_dir": settings.data_dir / "quarantine",
            "ae_title": settings.ae_title,
            "host": settings.scp_host,
            "port": settings.scp_port,
            "allow_any": settings.allow_any_ae,
            "min_free_disk_mb": settings.min_free_disk_mb,
        }
        if settings.scp_tls_cert or settings.scp_tls_key:
            if not (settings.scp_tls_cert and settings.scp_tls_key):
                raise ValueError("DICOM TLS needs both RAFSS_SCP_TLS_CERT and RAFSS_SCP_TLS_KEY")
            values["tls"] = TlsServerConfig(
                settings.scp_tls_cert, settings.scp_tls_key, settings.scp_tls_ca,
                settings.scp_tls_require_client_cert)
        values.update(overrides)
        return cls(**values)

RECONCILE_STOP_WAIT_SECONDS = 10.0  # how long stop() waits for a background reconciliation


def _status(code: int, comment: str | None = None) -> Dataset | int:
    if comment is None:
        return code
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO: 64 characters
    return ds


def store_instance(info: HeaderInfo, session_factory: sessionmaker[Session]) -> bool:
    """Record an already spooled instance (invalid ones marked); True if a row was added."""
    with session_factory.begin() as session:
        return record_instance(session, info.record, invalid=not info.valid).created


def record_spooled(info: HeaderInfo, engine: Engine) -> tuple[bool, bool]:
    """:func:`store_instance` on the SCP's autocommit engine (:func:`scp_engine`): one round
    trip. Returns ``(created, reconnected)``.

    Without pre-ping, a pooled connection the server has dropped (a restart) fails the first
    try; the pool is then invalidated and the second try runs on a fresh connection
    (``reconnected``: rows committed asynchronously just before the drop may be gone, so the
    caller reconciles the spool). A second failure is the caller's.
    """
    for attempt in (1, 2):
        try:
            with engine.connect() as conn:
                created = record_instance(conn, info.record, invalid=not info.valid).created
            return created, attempt == 2
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _database_unreachable(exc: SQLAlchemyError) -> bool:
    """A failure of the connection (server down, restarting, unreachable), not of a statement."""
    return isinstance(exc, OperationalError | InterfaceError) or bool(
        getattr(exc, "connection_invalidated", False)
    )


class StorageSCP:
    """The SCP as an object: ``start()`` (non-blocking), ``stop()``; also a context manager."""

    def __init__(
        self,
        config: ScpConfig,
        session_factory: sessionmaker[Session],
        *,
        allow_list: CallerAllowList | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.config = config
        self._factory = session_factory
        self._allow = allow_list or CallerAllowList(
            session_factory, ttl_seconds=config.allowlist_ttl_seconds, allow_any=config.allow_any
        )
        self._clock = clock
        bind = session_factory.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the SCP needs a session factory bound to an Engine")
        # the C-STORE path's own pool: autocommit, asynchronous commit, no pre-ping
        self._engine = scp_engine(bind, pool_size=config.max_associations)
        self._reconcile_due = threading.Event()  # a record failed: the spool may hold orphans
        self._reconcile_lock = threading.Lock()
        self._reconciler: threading.Thread | None = None
        self._stopping = threading.Event()
        self._server: ThreadedAssociationServer | None = None
        self.watermark = DiskWatermark(config.spool_dir, config.min_free_disk_mb)
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = 0  # no limit on received PDUs: fewer, larger reads
        ae.maximum_associations = self.config.max_associations
        ae.acse_timeout = self.config.acse_timeout
        ae.dimse_timeout = self.config.dimse_timeout
        ae.network_timeout = self.config.network_timeout
        ae.require_called_aet = self.config.require_called_aet
        ae.add_supported_context(sop.Verification, AllTransferSyntaxes)
        for uid in storage_sop_classes():
            ae.add_supported_context(uid, AllTransferSyntaxes)
        return ae

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("the SCP is not running: call start() first")
        return int(self._server.server_address[1])

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        ssl_context = None if self.config.tls is None else server_context(self.config.tls)
        self._server = self.ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            ssl_context=ssl_context,
            evt_handlers=[
                (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_C_ECHO, self._on_echo),
                (evt.EVT_C_STORE, self._on_store),
            ],
        )
        LOG.info(
            "Storage SCP %s listening on %s:%d%s (spool %s)",
            self.config.ae_title,
            self.config.host,
            self.port,
            " with TLS" if ssl_context else "",
            self.config.spool_dir,
        )

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        self._stopping.set()
        with self._reconcile_lock:
            reconciler = self._reconciler
        if reconciler is not None:
            # it stops between batches (reconcile_spool's ``stop``); a database that hangs
            # must not hang shutdown: the daemon thread dies with the process, and the rows it
            # had not recorded are recorded by the next reconciliation
            reconciler.join(RECONCILE_STOP_WAIT_SECONDS)
            if reconciler.is_alive():
                LOG.warning("spool reconciliation still running at shutdown; the next start "
                            "finishes it")
        self._engine.dispose()
        LOG.info("Storage SCP %s stopped", self.config.ae_title)

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- handlers: thin, no pixel decoding ---------------------------------------------------

    def _on_requested(self, event: Event) -> None:
        requestor = event.assoc.requestor
        calling_ae = str(requestor.primitive.calling_ae_title).strip()
        ip = requestor.address
        if self._allow.is_allowed(calling_ae, ip):
            if self.watermark.check().low:
                # rejected-transient, service-provider (presentation), local limit exceeded:
                # the sender keeps the study and retries later (see services/disk.py)
                event.assoc.acse.send_reject(0x02, 0x03, 0x02)
                event.assoc.kill()
            return
        LOG.warning(
            "refused association from AE %r at %s: not in the allow-list "
            "(add it to allowed_sources)",
            calling_ae,
            ip,
        )
        # rejected-permanent, service-user, calling AE title not recognised (PS3.8 9.3.4)
        event.assoc.acse.send_reject(0x01, 0x01, 0x03)
        event.assoc.kill()

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_store(self, event: Event) -> Dataset | int:
        request = event.request
        data = event.encoded_dataset()
        calling_ae = event.assoc.requestor.ae_title
        ip = event.assoc.requestor.address
        try:
            info = read_header(
                data, calling_ae=calling_ae, calling_ip=ip, received_at=self._clock()
            )
        except UnreadableInstanceError as exc:
            return self._refuse(data, CANNOT_UNDERSTAND, str(exc), calling_ae)
        record = info.record
        if record.sop_instance_uid != str(request.AffectedSOPInstanceUID):
            return self._refuse(
                data, CANNOT_UNDERSTAND, "SOPInstanceUID differs from the request", calling_ae
            )
        if record.sop_class_uid != str(request.AffectedSOPClassUID):
            return self._refuse(
                data,
                DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "SOPClassUID differs from the request",
                calling_ae,
            )
        if self.watermark.check().low:
            return _status(OUT_OF_RESOURCES, "RAFSS disk below its free-space watermark; "
                           "retry later")
        path = spool_path(self.config.spool_dir, record.sop_instance_uid)
        try:
            write_atomic(path, data)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            LOG.error(
                "cannot spool %s (%s): %s",
                record.sop_instance_uid,
                errno.errorcode.get(exc.errno or 0, type(exc).__name__),
                "free disk space" if full else "check the spool directory",
            )
            return _status(
                OUT_OF_RESOURCES,
                "RAFSS spool disk full; retry later" if full else "RAFSS spool unwritable",
            )
        try:
            created, reconnected = record_spooled(with_spool_path(info, str(path)), self._engine)
        except SQLAlchemyError as exc:
            if _database_unreachable(exc):  # not for a statement error: that would loop
                self._reconcile_due.set()
            LOG.error(
                "database unavailable recording %s (%s); the file stays in the spool and is "
                "recorded once the database answers again",
                record.sop_instance_uid,
                type(exc).__name__,
            )
            return _status(OUT_OF_RESOURCES, "RAFSS database unavailable; retry later")
        if reconnected or self._reconcile_due.is_set():
            self._start_reconcile()
        LOG.debug(
            "stored %s from %s (%s)",
            record.sop_instance_uid,
            calling_ae,
            "new" if created else "duplicate",
        )
        if not info.valid:
            LOG.warning(
                "stored %s from %s marked invalid: %s",
                record.sop_instance_uid,
                calling_ae,
                "; ".join(info.problems),
            )
            return _status(WARNING_DATASET_MISMATCH, ("stored as invalid: " + info.problems[0]))
        return SUCCESS

    def _refuse(self, data: bytes, code: int, reason: str, calling_ae: str) -> Dataset | int:
        try:
            kept = quarantine(self.config.quarantine_path, data, reason)
            where = f"kept as {kept.name}"
        except OSError as exc:
            where = f"not kept ({type(exc).__name__})"
        LOG.warning("refused an instance from %s: %s; %s", calling_ae, reason, where)
        return _status(code, f"{reason}; fix and resend")

    def _start_reconcile(self) -> None:
        """Reconcile the spool in the background (one run at a time), off the sender's time."""
        with self._reconcile_lock:
            if self._stopping.is_set() or (self._reconciler and self._reconciler.is_alive()):
                return
            self._reconcile_due.clear()
            self._reconciler = threading.Thread(
                target=self._reconcile, name="rafss-scp-reconcile", daemon=True
            )
            self._reconciler.start()

    def _reconcile(self) -> None:
        try:
            reconcile_spool(self.config.spool_dir, self._factory, stop=self._stopping)
        except SQLAlchemyError as exc:
            if _database_unreachable(exc):  # down again: run again once it answers
                self._reconcile_due.set()
            LOG.warning("spool reconciliation interrupted (%s)", type(exc).__name__)

    def wait_reconciled(self, timeout: float | None = None) -> bool:
        """Wait for a background reconciliation to finish; False if one is still running."""
        with self._reconcile_lock:
            reconciler = self._reconciler
        if reconciler is not None:
            reconciler.join(timeout)
            return not reconciler.is_alive()
        return True


def run_scp(
    config: ScpConfig, session_factory: sessionmaker[Session], stop_event: threading.Event
) -> None:
    """Run the SCP until ``stop_event`` is set (for a process: ``rafss scp``)."""
    reconcile_spool(config.spool_dir, session_factory)
    scp = StorageSCP(config, session_factory)
    scp.start()
    try:
        stop_event.wait()
    finally:
        scp.stop()


@dataclass
class ReconcileReport:
    """What :func:`reconcile_spool` found: files seen, rows added, files it could not read."""

    seen: int = 0
    recorded: int = 0
    unreadable: list[Path] = field(default_factory=list)


def reconcile_spool(
    spool_dir: Path,
    session_factory: sessionmaker[Session],
    *,
    batch: int = 500,
    stop: threading.Event | None = None,
) -> ReconcileReport:
    """Record every spooled file that has no ``instances`` row (after a database outage, or a
    crash that lost rows committed asynchronously by the SCP; see the module docstring).

    Safe to run at any time and repeatedly: recording is idempotent. ``stop``: return early,
    between batches, once it is set.
    """
    report = ReconcileReport()
    paths = list(spooled_files(spool_dir))
    for start in range(0, len(paths), batch):
        if stop is not None and stop.is_set():
            break
        chunk = paths[start : start + batch]
        uids = [p.stem for p in chunk]
        with session_factory() as session:
            known = known_sop_instance_uids(session, uids)
        report.seen += len(chunk)
        for path in chunk:
            if path.stem in known:
                continue
            try:
                info = read_header(path.read_bytes())
            except (UnreadableInstanceError, OSError):
                report.unreadable.append(path)
                continue
            if store_instance(with_spool_path(info, str(path)), session_factory):
                report.recorded += 1
    if report.recorded or report.unreadable:
        LOG.info(
            "reconciled the spool: %d files, %d recorded now, %d unreadable",
            report.seen,
            report.recorded,
            len(report.unreadable),
        )
    return report
