"""The Storage SCU delivering a DICOM-SEG to real peers: Orthanc, dcmtk storescp, RAFSS itself."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, SegmentationStorage

from rafss_core.store.enums import DeliveryStatus
from rafss_core.store.repositories.deliveries import (
    add_destination,
    create_delivery,
    get_delivery,
)
from services.scu import RetryPolicy, deliver, deliver_due
from services.tls import TlsServerConfig
from tests.integration.services.peers import (
    HOST,
    dcmtk_storescp,
    free_port,
    orthanc,
    self_signed_cert,
)
from tests.integration.services.seg_helpers import make_seg

pytestmark = pytest.mark.data

FAST = RetryPolicy(base_seconds=0.05, factor=2.0, max_attempts=3)


@pytest.fixture
def seg_result(db_session_factory, make_series, acdc_volume, tmp_path: Path) -> Callable:
    """Make a SEG file from the ACDC label map and its job + result rows: (result_id, uid, path)."""
    from rafss_core.store.enums import JobKind
    from rafss_core.store.models import Job, Result

    _, labels = acdc_volume

    def make(name: str = "seg") -> tuple[int, str, Path]:
        series = make_series(f"{name}-source")
        path = make_seg(series, labels, tmp_path / "results" / f"{name}-{uuid.uuid4().hex}.dcm")
        seg = pydicom.dcmread(path, stop_before_pixels=True)
        with db_session_factory.begin() as session:
            job = Job(kind=JobKind.SEGMENT, idempotency_key=f"test-{uuid.uuid4().hex}")
            session.add(job)
            session.flush()
            result = Result(
                job_id=job.id,
                seg_sop_instance_uid=str(seg.SOPInstanceUID),
                seg_series_instance_uid=str(seg.SeriesInstanceUID),
                path=str(path),
            )
            session.add(result)
            session.flush()
            return result.id, str(seg.SOPInstanceUID), path

    return make


def new_delivery(session_factory, result_id: int, *, ae: str, port: int, **tls) -> int:
    with session_factory.begin() as session:
        destination = add_destination(
            session,
            name=f"dest-{uuid.uuid4().hex[:12]}",
            ae_title=ae,
            host=HOST,
            port=port,
            **tls,
        )
        return create_delivery(session, result_id, destination)


def delivery_row(session_factory, delivery_id: int):
    with session_factory() as session:
        return get_delivery(session, delivery_id)


def test_seg_is_delivered_to_orthanc(db_session_factory, seg_result, tmp_path: Path) -> None:
    result_id, seg_uid, _ = seg_result("orthanc")
    with orthanc(tmp_path / "orthanc") as server:
        delivery_id = new_delivery(
            db_session_factory, result_id, ae=server.ae_title, port=server.dicom_port
        )
        final = deliver(db_session_factory, [delivery_id], policy=FAST)
        found = server.lookup(seg_uid)
        assert [f["Type"] for f in found] == ["Instance"]
        tags = server.get(f"/instances/{found[0]['ID']}/simplified-tags")
    assert final == {delivery_id: DeliveryStatus.SUCCEEDED}
    assert tags["SOPClassUID"] == SegmentationStorage  # type: ignore[index]
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.attempts, row.last_status, row.delivered_at is not None) == (1, 0, True)


def test_seg_batch_is_delivered_to_storescp_over_one_association(
    db_session_factory, seg_result, tmp_path: Path
) -> None:
    results = [seg_result("storescp-a"), seg_result("storescp-b")]
    with dcmtk_storescp(tmp_path / "received") as scp:
        with db_session_factory.begin() as session:
            destination = add_destination(
                session, name=f"dest-{uuid.uuid4().hex[:12]}", ae_title=scp.ae_title,
                host=HOST, port=scp.port,
            )  # fmt: skip
            ids = [create_delivery(session, r[0], destination) for r in results]
        outcomes = deliver_due(db_session_factory, policy=FAST, ids=ids)
        received = {str(pydicom.dcmread(p).SOPInstanceUID) for p in scp.files()}
        associations = scp.associations()
    assert {o.status for o in outcomes} == {DeliveryStatus.SUCCEEDED}
    assert received == {uid for _, uid, _ in results}
    assert associations == 1


def test_destination_down_then_back_is_retried_until_delivered(
    db_session_factory, seg_result, tmp_path: Path
) -> None:
    result_id, seg_uid, _ = seg_result("retry")
    port = free_port()
    delivery_id = new_delivery(db_session_factory, result_id, ae="DCMTKSCP", port=port)
    policy = RetryPolicy(base_seconds=60, factor=2, max_attempts=5)
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    first = deliver_due(db_session_factory, now=t0, policy=policy, ids=[delivery_id])
    assert [o.status for o in first] == [DeliveryStatus.FAILED]
    assert first[0].next_attempt_at == t0 + dt.timedelta(seconds=60)
    assert "cannot connect" in (first[0].error or "")
    # not due yet: nothing is attempted
    assert (
        deliver_due(db_session_factory, now=t0 + dt.timedelta(seconds=59), ids=[delivery_id]) == []
    )
    second = deliver_due(
        db_session_factory, now=t0 + dt.timedelta(seconds=60), policy=policy, ids=[delivery_id]
    )
    assert second[0].next_attempt_at == t0 + dt.timedelta(seconds=60 + 120)
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 2)

    with dcmtk_storescp(tmp_path / "back", port=port) as scp:
        third = deliver_due(
            db_session_factory, now=t0 + dt.timedelta(seconds=180), policy=policy, ids=[delivery_id]
        )
        received = [str(pydicom.dcmread(p).SOPInstanceUID) for p in scp.files()]
    assert [o.status for o in third] == [DeliveryStatus.SUCCEEDED]
    assert received == [seg_uid]
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.status, row.attempts, row.last_status) == (DeliveryStatus.SUCCEEDED, 3, 0)


def test_retries_run_out_and_the_delivery_is_dead(db_session_factory, seg_result) -> None:
    result_id, _, _ = seg_result("dead")
    delivery_id = new_delivery(db_session_factory, result_id, ae="NOBODY", port=free_port())
    final = deliver(db_session_factory, [delivery_id], policy=FAST)
    assert final == {delivery_id: DeliveryStatus.DEAD}
    row = delivery_row(db_session_factory, delivery_id)
    assert row.attempts == FAST.max_attempts
    assert "gave up after 3 attempts" in row.last_error
    assert row.next_attempt_at is None


def scripted_scp(status: int | None, *, contexts=(SegmentationStorage,)):
    """A pynetdicom SCP answering every C-STORE with ``status`` (a destination's behaviour)."""
    ae = AE(ae_title="SCRIPTED")
    for uid in contexts:
        ae.add_supported_context(uid)
    handlers = [(evt.EVT_C_STORE, lambda event: status)]
    return ae.start_server((HOST, 0), block=False, evt_handlers=handlers)


@pytest.mark.parametrize(
    ("status", "expected", "attempts"),
    [
        (0xB007, DeliveryStatus.SUCCEEDED, 1),  # warning: delivered, warning kept
        (0xA700, DeliveryStatus.FAILED, 1),  # out of resources: retried later
        (0xA900, DeliveryStatus.DEAD, 1),  # does not match SOP class: permanent
        (0xC000, DeliveryStatus.FAILED, 1),  # cannot understand: retried
    ],
)
def test_dimse_statuses_are_classified(
    db_session_factory, seg_result, status: int, expected: DeliveryStatus, attempts: int
) -> None:
    result_id, _, _ = seg_result(f"status-{status:04x}")
    server = scripted_scp(status)
    try:
        delivery_id = new_delivery(
            db_session_factory, result_id, ae="SCRIPTED", port=server.server_address[1]
        )
        outcomes = deliver_due(db_session_factory, policy=FAST, ids=[delivery_id])
    finally:
        server.shutdown()
    assert [o.status for o in outcomes] == [expected]
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.attempts, row.last_status) == (attempts, status)
    assert f"0x{status:04X}" in row.last_error


def test_destination_without_seg_support_is_dead_at_once(db_session_factory, seg_result) -> None:
    result_id, _, _ = seg_result("nosupport")
    server = scripted_scp(0x0000, contexts=(CTImageStorage,))
    try:
        delivery_id = new_delivery(
            db_session_factory, result_id, ae="SCRIPTED", port=server.server_address[1]
        )
        final = deliver(db_session_factory, [delivery_id], policy=FAST)
    finally:
        server.shutdown()
    assert final == {delivery_id: DeliveryStatus.DEAD}
    row = delivery_row(db_session_factory, delivery_id)
    assert row.attempts == 1 and "does not accept" in row.last_error


def test_missing_result_file_is_dead_with_the_reason(db_session_factory, seg_result) -> None:
    result_id, _, path = seg_result("missing")
    path.unlink()
    delivery_id = new_delivery(db_session_factory, result_id, ae="ANY", port=free_port())
    assert deliver(db_session_factory, [delivery_id], policy=FAST) == {
        delivery_id: DeliveryStatus.DEAD
    }
    assert "result file missing" in delivery_row(db_session_factory, delivery_id).last_error


def test_seg_is_delivered_over_tls_to_the_rafss_scp(
    db_session_factory, seg_result, scp_factory, tmp_path: Path
) -> None:
    from tests.integration.services.conftest import instance_rows

    cert, key = self_signed_cert(tmp_path / "tls")
    scp = scp_factory(tls=TlsServerConfig(cert_file=cert, key_file=key), allow_any=True)
    result_id, seg_uid, _ = seg_result("tls")
    delivery_id = new_delivery(
        db_session_factory, result_id, ae="RAFSS", port=scp.port,
        tls_enabled=True, tls_ca_file=str(cert),
    )  # fmt: skip
    assert deliver(db_session_factory, [delivery_id], policy=FAST) == {
        delivery_id: DeliveryStatus.SUCCEEDED
    }
    assert list(instance_rows(db_session_factory, [seg_uid])) == [seg_uid]
