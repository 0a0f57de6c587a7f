"""The Storage SCP against real dcmtk peers (storescu, echoscu) and the real embedded Postgres."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from services.spool import spool_path
from tests.integration.services.conftest import count_rows, instance_rows
from tests.integration.services.peers import compress, echoscu, storescu

pytestmark = pytest.mark.data


def uids_of(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]


def assert_stored(scp, db_session_factory, paths: list[Path]) -> None:
    uids = uids_of(paths)
    rows = instance_rows(db_session_factory, uids)
    assert sorted(rows) == sorted(uids), "every sent instance has a row"
    for uid, source in zip(uids, paths, strict=True):
        state, path = rows[uid]
        assert state == "received"
        assert Path(path) == spool_path(scp.config.spool_dir, uid)
        assert Path(path).read_bytes()[132:] != b""
        stored = pydicom.dcmread(path)
        original = pydicom.dcmread(source)
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert stored.PixelData == original.PixelData  # byte-identical pixels, still encoded


def assert_sent(result) -> None:
    """storescu -nh exits 0 even after failed stores: check its log too."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Store Failed" not in output and "Warning" not in output, output


def test_echoscu_gets_an_answer(scp) -> None:
    result = echoscu(scp.port)
    assert result.returncode == 0, result.stderr


def test_storescu_series_is_stored_with_rows(scp, db_session_factory, make_series) -> None:
    paths = make_series("plain")
    assert_sent(storescu(scp.port, paths))
    assert_stored(scp, db_session_factory, paths)
    with db_session_factory() as session:
        from rafss_core.store.models import Instance, Series

        uid = uids_of(paths[:1])[0]
        instance = session.query(Instance).filter_by(sop_instance_uid=uid).one()
        series = session.get(Series, instance.series_id)
        assert instance.calling_ae == "STORESCU"
        assert str(instance.calling_ip) == "127.0.0.1"
        assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
        assert (instance.rows, instance.columns) == (256, 216)
        assert instance.image_position_patient is not None
        assert series.modality == "MR" and series.body_part == "HEART"


@pytest.mark.parametrize(("tool", "propose"), [("dcmcjpeg", "-xs"), ("dcmcrle", "-xr")])
def test_storescu_compressed_copies_are_stored(
    scp, db_session_factory, make_series, tmp_path: Path, tool: str, propose: str
) -> None:
    paths = compress(make_series(tool), tmp_path / f"{tool}-out", tool)
    syntax = pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID
    assert syntax.is_compressed
    # storescu proposes only uncompressed syntaxes unless told; -xs / -xr keep the compression
    assert_sent(storescu(scp.port, paths, extra=[propose]))
    assert_stored(scp, db_session_factory, paths)
    rows = instance_rows(db_session_factory, uids_of(paths))
    assert all(Path(p).exists() for _, p in rows.values())


def test_duplicate_send_keeps_one_row(scp, db_session_factory, make_series) -> None:
    paths = make_series("dup")[:3]
    for _ in range(2):
        assert_sent(storescu(scp.port, paths))
    for uid in uids_of(paths):
        assert count_rows(db_session_factory, uid) == 1


def test_unknown_ae_is_rejected_and_nothing_stored(scp, db_session_factory, make_series) -> None:
    paths = make_series("stranger")[:2]
    echo = echoscu(scp.port, calling_ae="STRANGER")
    assert echo.returncode != 0
    result = storescu(scp.port, paths, calling_ae="STRANGER")
    assert result.returncode != 0
    assert "reject" in (result.stdout + result.stderr).lower()
    assert instance_rows(db_session_factory, uids_of(paths)) == {}
    assert not any(spool_path(scp.config.spool_dir, u).exists() for u in uids_of(paths))
    # the SCP still serves known callers
    assert echoscu(scp.port).returncode == 0


def test_ip_allow_list_restricts_an_ae_to_its_address(
    scp_factory, db_session_factory, make_series
) -> None:
    from rafss_core.store.repositories.sources import add_allowed_source

    with db_session_factory.begin() as session:
        add_allowed_source(session, "REMOTEONLY", ip="10.9.8.7")
        add_allowed_source(session, "LOOPNET", ip="127.0.0.0/8")
    scp = scp_factory(allowlist_ttl_seconds=0)
    assert echoscu(scp.port, calling_ae="REMOTEONLY").returncode != 0
    assert echoscu(scp.port, calling_ae="LOOPNET").returncode == 0


def test_allow_any_admits_unknown_callers(scp_factory, make_series) -> None:
    scp = scp_factory(allow_any=True)
    assert echoscu(scp.port, calling_ae="WHOEVER").returncode == 0
