"""The SCP under trouble: database down, disk full, TLS, and reconciliation of the spool."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import MRImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from services.allowlist import CallerAllowList
from services.scp import OUT_OF_RESOURCES, reconcile_spool
from services.spool import spool_path, spooled_files
from services.tls import TlsServerConfig, client_context
from tests.integration.services.conftest import instance_rows
from tests.integration.services.peers import HOST, echoscu, self_signed_cert, storescu

pytestmark = pytest.mark.data

UNREACHABLE_DB = "postgresql+psycopg://rafss@127.0.0.1:1/unreachable"


def uids_of(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]


def test_database_down_refuses_with_out_of_resources_and_keeps_the_files(
    scp_factory, db_session_factory, make_series
) -> None:
    from rafss_core.store.engine import make_engine, session_factory

    engine = make_engine(UNREACHABLE_DB, connect_args={"connect_timeout": 2})
    down = session_factory(engine)
    scp = scp_factory(down, allow_any=True)
    paths = make_series("dbdown")[:4]
    uids = uids_of(paths)
    result = storescu(scp.port, paths)
    output = result.stdout + result.stderr
    assert output.count("Refused: OutOfResources") == len(paths), output
    assert instance_rows(db_session_factory, uids) == {}
    # the files are durably in the spool, and reconciliation records them after the outage
    for uid in uids:
        assert spool_path(scp.config.spool_dir, uid).exists()
    report = reconcile_spool(scp.config.spool_dir, db_session_factory)
    assert report.recorded == len(paths) and not report.unreadable
    assert sorted(instance_rows(db_session_factory, uids)) == sorted(uids)
    assert reconcile_spool(scp.config.spool_dir, db_session_factory).recorded == 0
    engine.dispose()


@contextlib.contextmanager
def tiny_filesystem(path: Path):
    """A 64 KiB tmpfs (a real full disk); skip where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the disk-full path is untested")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_answers_out_of_resources(scp_factory, db_session_factory, make_series, tmp_path):
    paths = make_series("diskfull")[:2]
    with tiny_filesystem(tmp_path / "full") as full:
        scp = scp_factory(spool_dir=full / "spool")
        ae = AE(ae_title="RAFSS-TEST")
        ae.add_requested_context(
            MRImageStorage, pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID
        )
        assoc = ae.associate(HOST, scp.port, ae_title="RAFSS")
        assert assoc.is_established
        try:
            status = assoc.send_c_store(pydicom.dcmread(paths[0]))
        finally:
            assoc.release()
        scp.stop()
    assert status.Status == OUT_OF_RESOURCES
    assert "disk full" in str(status.get("ErrorComment", ""))
    assert instance_rows(db_session_factory, uids_of(paths[:1])) == {}


@pytest.fixture
def tls_scp(scp_factory, tmp_path: Path):
    cert, key = self_signed_cert(tmp_path / "tls")
    scp = scp_factory(tls=TlsServerConfig(cert_file=cert, key_file=key))
    return scp, cert, key


def test_tls_association_with_pynetdicom_client(tls_scp, db_session_factory, make_series) -> None:
    scp, cert, _ = tls_scp
    paths = make_series("tls")[:2]
    ae = AE(ae_title="RAFSS-TEST")
    ae.add_requested_context(Verification)
    ae.add_requested_context(MRImageStorage, pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID)
    context = client_context(cert)
    assoc = ae.associate(HOST, scp.port, ae_title="RAFSS", tls_args=(context, "localhost"))
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
        statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in paths]
        version = assoc.dul.socket.socket.version()
    finally:
        assoc.release()
    assert statuses == [0, 0]
    assert version in ("TLSv1.2", "TLSv1.3")
    assert sorted(instance_rows(db_session_factory, uids_of(paths))) == sorted(uids_of(paths))


def test_tls_association_with_dcmtk_storescu(tls_scp, db_session_factory, make_series) -> None:
    scp, cert, _ = tls_scp
    paths = make_series("tls-dcmtk")[:2]
    # +tla: anonymous TLS client; +cf: trust our self-signed certificate
    result = storescu(scp.port, paths, extra=["+tla", "+cf", str(cert)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Store Failed" not in output, output
    assert sorted(instance_rows(db_session_factory, uids_of(paths))) == sorted(uids_of(paths))


def test_tls_scp_refuses_plain_tcp(tls_scp) -> None:
    scp, _, _ = tls_scp
    assert echoscu(scp.port, calling_ae="ECHOSCU").returncode != 0
    assert scp.ae.active_associations == []


def test_allow_list_keeps_last_known_entries_when_database_goes_down(db_session_factory) -> None:
    from rafss_core.store.engine import make_engine, session_factory
    from rafss_core.store.repositories.sources import add_allowed_source

    with db_session_factory.begin() as session:
        add_allowed_source(session, "KEEPME")
    now = [0.0]
    allow = CallerAllowList(db_session_factory, ttl_seconds=10, clock=lambda: now[0])
    assert allow.is_allowed("KEEPME", "10.0.0.1")
    assert not allow.is_allowed("NOBODY", "10.0.0.1")
    engine = make_engine(UNREACHABLE_DB, connect_args={"connect_timeout": 2})
    allow._factory = session_factory(engine)  # the database becomes unreachable
    now[0] = 100.0
    assert allow.is_allowed("KEEPME", "10.0.0.1")
    cold = CallerAllowList(session_factory(engine), ttl_seconds=10)
    assert not cold.is_allowed("KEEPME", "10.0.0.1"), "fails closed with no list read yet"
    engine.dispose()


def test_reconcile_ignores_quarantine_and_temp_files(db_session_factory, make_series, tmp_path):
    spool = tmp_path / "spool"
    paths = make_series("reconcile")[:2]
    for path in paths:
        uid = uids_of([path])[0]
        target = spool_path(spool, uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (spool / "ab").mkdir(exist_ok=True)
    (spool / "ab" / ".torn.dcm.123.tmp").write_bytes(b"partial")
    assert len(list(spooled_files(spool))) == 2
    report = reconcile_spool(spool, db_session_factory)
    assert (report.seen, report.recorded) == (2, 2)
