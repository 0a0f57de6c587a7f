"""The disk watermark: below it the SCP refuses associations (transiently) and /metrics and
/health show it; when space returns the next association succeeds, with no restart."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from rafss_core.app import App
from rafss_core.config import Settings
from services.api.app import create_app
from services.disk import free_bytes
from services.scp import ScpConfig, StorageSCP

MB = 2**20


def _associate(port: int) -> str:
    """"accepted", "rejected" or "failed" for an association from an allowed caller."""
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port)
    if assoc.is_established:
        assoc.release()
        return "accepted"
    return "rejected" if assoc.is_rejected else "failed"


def _watermark(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("rafss_disk_watermark_active "):
            return float(line.split()[1])
    raise AssertionError("rafss_disk_watermark_active missing from /metrics")


def test_watermark_refuses_then_recovers(db_session_factory, allowed_callers, tmp_path: Path):
    threshold_mb = (free_bytes(tmp_path) - 150 * MB) // MB  # 150 MB of headroom
    settings = Settings(data_dir=tmp_path, min_free_disk_mb=threshold_mb)
    client = TestClient(create_app(App(db_session_factory, settings)))
    scp = StorageSCP(ScpConfig.from_settings(settings, port=0), db_session_factory)
    scp.start()
    ballast = tmp_path / "ballast"
    try:
        assert _associate(scp.port) == "accepted" and _watermark(client) == 0.0
        with ballast.open("wb") as fh:  # the disk fills up: 400 MB more
            os.posix_fallocate(fh.fileno(), 0, 400 * MB)
        assert _associate(scp.port) == "rejected"
        assert _watermark(client) == 1.0
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["disk"]["watermark_active"] is True
        ballast.unlink()  # space returns
        assert _associate(scp.port) == "accepted"  # the same SCP, no restart
        assert _watermark(client) == 0.0 and client.get("/health").json()["status"] == "ok"
        text = client.get("/metrics").text
        assert "rafss_disk_free_bytes" in text and "rafss_spool_bytes" in text
    finally:
        ballast.unlink(missing_ok=True)
        scp.stop()
