"""STOW-RS delivery to Orthanc's DICOMweb plugin: the SEG and its volume report arrive; a
DICOMweb server that keeps failing is retried and then dead-lettered; a refusal is permanent."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from rafss_core.dicom.report import Confidence, write_volume_report
from rafss_core.dicom.series import load_series
from rafss_core.store.enums import DeliveryStatus
from rafss_core.store.repositories.deliveries import add_destination, create_delivery
from services.scu import RetryPolicy, deliver
from tests.integration.services.peers import HOST, orthanc
from tests.integration.services.test_scu_delivery import delivery_row
from tests.unit.dicom.helpers import ACDC_SEGMENTS, ALGORITHM

pytestmark = pytest.mark.data

FAST = RetryPolicy(base_seconds=0.05, factor=2.0, max_attempts=3)


@pytest.fixture
def seg_and_report(db_session_factory, make_series, acdc_volume, tmp_path: Path):
    """RAFSS's SEG and volume report for an ACDC series, with their job and result rows."""
    from rafss_core.dicom.seg import write_seg
    from rafss_core.store.enums import JobKind
    from rafss_core.store.models import Job
    from rafss_core.store.repositories.results import upsert_result

    _, labels = acdc_volume
    loaded = load_series(make_series("stow-source"))
    key = f"stow-{uuid.uuid4().hex}"
    seg = write_seg(labels, loaded, ACDC_SEGMENTS, ALGORITHM, key)
    report = write_volume_report(seg, labels, loaded, ACDC_SEGMENTS, Confidence(0.9, 0.8, []),
                                 key)
    seg_path, report_path = tmp_path / "seg.dcm", tmp_path / "sr.dcm"
    seg.save_as(seg_path, enforce_file_format=True)
    report.save_as(report_path, enforce_file_format=True)
    with db_session_factory.begin() as s:
        job = Job(kind=JobKind.SEGMENT, idempotency_key=key)
        s.add(job)
        s.flush()
        result_id = upsert_result(s, job_id=job.id, seg_sop_instance_uid=seg.SOPInstanceUID,
                                  seg_series_instance_uid=seg.SeriesInstanceUID,
                                  path=str(seg_path), report_path=str(report_path), details={})
    return result_id, str(seg.SOPInstanceUID), str(report.SOPInstanceUID)


def _stow_delivery(sessions, result_id: int, url: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with sessions.begin() as s:
        dest = add_destination(s, name=f"web-{uuid.uuid4().hex[:10]}", ae_title=None,
                               host=parts.hostname, port=parts.port, protocol="stow-rs",
                               url=url)
        return create_delivery(s, result_id, dest)


def test_seg_and_report_arrive_at_orthanc_by_stow_rs(db_session_factory, seg_and_report,
                                                     tmp_path):
    result_id, seg_uid, report_uid = seg_and_report
    with orthanc(tmp_path / "orthanc", dicomweb=True) as server:
        delivery_id = _stow_delivery(db_session_factory, result_id, server.dicomweb_url)
        final = deliver(db_session_factory, [delivery_id], policy=FAST)
        found = {uid: server.lookup(uid) for uid in (seg_uid, report_uid)}
        modalities = {uid: server.get(f"/instances/{hits[0]['ID']}/simplified-tags")["Modality"]
                      for uid, hits in found.items() if hits}
    assert final == {delivery_id: DeliveryStatus.SUCCEEDED}
    assert modalities == {seg_uid: "SEG", report_uid: "SR"}
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.attempts, row.last_status, row.last_error) == (1, 200, None)


class _Failing(BaseHTTPRequestHandler):
    """A DICOMweb server that answers every STOW-RS with ``code``."""

    code = 503
    posts: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(self.code)
        self.send_response(self.code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("code", "attempts", "permanent"), [(503, 3, False), (415, 1, True)])
def test_failing_dicomweb_server_is_retried_then_dead(db_session_factory, seg_and_report, code,
                                                      attempts, permanent):
    handler = type("Handler", (_Failing,), {"code": code, "posts": []})
    server = ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{HOST}:{server.server_address[1]}/dicom-web"
        delivery_id = _stow_delivery(db_session_factory, seg_and_report[0], url)
        final = deliver(db_session_factory, [delivery_id], policy=FAST)
    finally:
        server.shutdown()
    assert final == {delivery_id: DeliveryStatus.DEAD}
    row = delivery_row(db_session_factory, delivery_id)
    assert (row.attempts, row.last_status) == (attempts, code)
    assert f"HTTP {code}" in row.last_error
    assert ("gave up after" in row.last_error) is not permanent
    assert handler.posts and set(handler.posts) == {code}
