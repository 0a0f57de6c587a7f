"""``status`` and ``upgrade`` (the twins of ``rafss db status|upgrade``) on real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rafss_core.store import admin
from rafss_core.store.embedded import stop_embedded
from rafss_core.store.engine import pgdata_dir


def test_status_reports_postgres_18_and_pgvector_08(migrated_database_url: str) -> None:
    info = admin.status(url=migrated_database_url)
    assert info["server_version"].split(".")[0] == "18"
    assert info["pgvector_version"].startswith("0.8.")
    assert info["migration_head"] == admin.migration_head() == info["current_revision"]
    assert info["up_to_date"] is True


def test_status_of_an_empty_database(fresh_database_url: str) -> None:
    info = admin.status(url=fresh_database_url)
    assert info["current_revision"] is None and info["up_to_date"] is False
    assert info["pgvector_version"] is None
    assert info["pgvector_available"].startswith("0.8.")


def test_upgrade_with_a_data_dir_starts_the_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No RAFSS_DATABASE_URL: a server is created under <data_dir>/pg and reused."""
    monkeypatch.delenv("RAFSS_DATABASE_URL", raising=False)
    data_dir = tmp_path / "rafss-data"
    try:
        assert admin.upgrade(data_dir=data_dir) == admin.migration_head()
        assert (pgdata_dir(data_dir) / "PG_VERSION").read_text().strip() == "18"
        info = admin.status(data_dir=data_dir)
        assert info["up_to_date"] is True
        assert str(pgdata_dir(data_dir).resolve()) in info["url"].replace("%2F", "/")
    finally:
        stop_embedded(pgdata_dir(data_dir))
