"""Settings precedence: defaults < config file < environment < options given."""

from __future__ import annotations

from rafss_core.config import Settings


def test_precedence(tmp_path, monkeypatch):
    for key in ("RAFSS_SCP_PORT", "RAFSS_API_PORT", "RAFSS_K", "RAFSS_SPOOL_DIR"):
        monkeypatch.delenv(key, raising=False)
    conf = tmp_path / "rafss.conf"
    conf.write_text("RAFSS_SCP_PORT=1104\nRAFSS_API_PORT=9090\nRAFSS_K=6\n")
    monkeypatch.setenv("RAFSS_CONFIG_FILE", str(conf))
    monkeypatch.setenv("RAFSS_SCP_PORT", "12000")
    s = Settings.load(k=None)  # None: not given
    assert (s.api_port, s.scp_port, s.k) == (9090, 12000, 6)  # file < environment
    assert Settings.load(scp_port=13000).scp_port == 13000  # environment < option
    monkeypatch.delenv("RAFSS_CONFIG_FILE")
    assert (Settings.load().api_port, Settings.load().k) == (8080, 4)  # the defaults


def test_spool_dir_is_shared_or_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("RAFSS_SPOOL_DIR", raising=False)
    assert Settings.load(data_dir=tmp_path).spool_dir == tmp_path / "spool"
    monkeypatch.setenv("RAFSS_SPOOL_DIR", "/mnt/shared/spool")
    assert str(Settings.load(data_dir=tmp_path).spool_dir) == "/mnt/shared/spool"
    assert str(Settings.load(spool_dir="/elsewhere").spool_dir) == "/elsewhere"
