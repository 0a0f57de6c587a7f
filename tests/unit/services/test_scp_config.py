from __future__ import annotations

from pathlib import Path

import pytest

from rafss_core.config import Settings
from services.scp import ScpConfig


def test_tls_comes_from_settings(tmp_path: Path):
    s = Settings(data_dir=tmp_path, scp_tls_cert=tmp_path / "c.pem", scp_tls_key=tmp_path / "k.pem")
    cfg = ScpConfig.from_settings(s, port=0)
    assert cfg.tls is not None and cfg.tls.cert_file == tmp_path / "c.pem"
    assert cfg.spool_dir == tmp_path / "spool"
    assert ScpConfig.from_settings(Settings(data_dir=tmp_path)).tls is None
    with pytest.raises(ValueError, match="RAFSS_SCP_TLS_KEY"):
        ScpConfig.from_settings(Settings(data_dir=tmp_path, scp_tls_cert=tmp_path / "c.pem"))
