"""The watermark logs once when an episode starts and once when it ends, not on every check."""

from __future__ import annotations

import logging

from services.disk import DiskWatermark, free_bytes


def test_logs_once_per_episode(tmp_path, caplog):
    huge = free_bytes(tmp_path) // 2**20 + 10_000  # MB: always below
    mark = DiskWatermark(tmp_path / "spool", huge)
    with caplog.at_level(logging.WARNING, logger="services.disk"):
        assert all(mark.check().low for _ in range(3))
        mark.min_free_bytes = 0  # space returns
        assert not any(mark.check().low for _ in range(3))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "refusing new associations" in messages[0] and "RAFSS_MIN_FREE_DISK_MB" in messages[0]
    assert "accepting associations" in messages[1]
