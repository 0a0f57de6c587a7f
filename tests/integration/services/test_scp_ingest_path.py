"""The SCP's fast ingest path (issue 12) on a real server: one statement per instance on its own
autocommit pool without pre-ping, asynchronous commit, and the reconciliation that covers it.

The recovery tests use a database of their own, since they cut the SCP's connections.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from rafss_core.store.engine import SCP_APPLICATION_NAME, make_engine, scp_engine, session_factory
from rafss_core.store.models import Instance
from services.scp import ScpConfig, StorageSCP, reconcile_spool
from services.spool import spool_path
from tests.conftest import migrated_database
from tests.integration.services.conftest import instance_rows
from tests.integration.services.peers import storescu

pytestmark = pytest.mark.data


def uids_of(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]


def succeeded(result: subprocess.CompletedProcess[str], n: int) -> bool:
    output = result.stdout + result.stderr
    return result.returncode == 0 and output.count("Received Store Response (Success)") == n


def terminate_scp_connections(admin: Engine, database: str) -> int:
    """Cut every connection the SCP's pool holds to ``database`` (as a server restart would)."""
    with admin.connect() as conn:
        return len(
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :app AND datname = :db"
                ),
                {"app": SCP_APPLICATION_NAME, "db": database},
            ).all()
        )


@pytest.fixture
def own_database(pg_server_url: str) -> Iterator[tuple[Engine, Engine, str]]:
    """(engine on a database of its own, engine on the maintenance database, its name)."""
    admin = make_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with migrated_database(pg_server_url, prefix="rafss_scp_ingest") as url:
        engine = make_engine(url)
        name = str(engine.url.database)
        try:
            yield engine, admin, name
        finally:
            with admin.connect() as conn:  # whatever a test left, the drop must be possible
                conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            engine.dispose()
    admin.dispose()


@pytest.fixture
def own_scp(own_database, tmp_path: Path) -> Iterator[StorageSCP]:
    engine, _, _ = own_database
    config = ScpConfig(spool_dir=tmp_path / "spool", quarantine_dir=tmp_path / "q", port=0,
                       allow_any=True)
    with StorageSCP(config, session_factory(engine)) as scp:
        yield scp


def test_scp_engine_commits_asynchronously_and_does_not_ping(own_database) -> None:
    engine, admin, name = own_database
    scp = scp_engine(engine, pool_size=1)
    try:
        with scp.connect() as conn:
            assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "off"
            assert conn.execute(sa.text("SHOW application_name")).scalar_one() == \
                SCP_APPLICATION_NAME
        assert terminate_scp_connections(admin, name) == 1
        # a pre-pinging pool would have replaced the dead connection silently
        with pytest.raises(DBAPIError) as error, scp.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert error.value.connection_invalidated
        with scp.connect() as conn:  # the pool was invalidated: a fresh connection now
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        scp.dispose()


def test_dropped_connection_is_replaced_and_lost_rows_are_reconciled(
    own_scp, own_database, make_series
) -> None:
    """A server restart cuts the pool: the next C-STORE still succeeds (one retry on a fresh
    connection), and rows the restart lost (asynchronous commit) come back from the spool."""
    engine, admin, name = own_database
    paths = make_series("dropped")[:3]
    uids = uids_of(paths)
    factory = session_factory(engine)
    assert succeeded(storescu(own_scp.port, paths[:2]), 2)
    with factory.begin() as session:  # what a crash can lose: rows committed asynchronously
        session.execute(sa.delete(Instance).where(Instance.sop_instance_uid == uids[0]))
    assert terminate_scp_connections(admin, name) >= 1
    assert succeeded(storescu(own_scp.port, paths[2:]), 1)
    assert own_scp.wait_reconciled(timeout=120)
    assert sorted(instance_rows(factory, uids)) == sorted(uids)


def test_database_down_then_back_records_the_refused_files_without_a_restart(
    own_scp, own_database, make_series
) -> None:
    engine, admin, name = own_database
    paths = make_series("outage")[:3]
    uids = uids_of(paths)
    factory = session_factory(engine)
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
    terminate_scp_connections(admin, name)
    result = storescu(own_scp.port, paths[:2])
    assert (result.stdout + result.stderr).count("Refused: OutOfResources") == 2
    for uid in uids[:2]:  # refused, yet durably in the spool
        assert spool_path(own_scp.config.spool_dir, uid).exists()
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    assert instance_rows(factory, uids) == {}
    assert succeeded(storescu(own_scp.port, paths[2:]), 1)
    assert own_scp.wait_reconciled(timeout=120)
    assert sorted(instance_rows(factory, uids)) == sorted(uids)


def test_concurrent_associations_with_overlapping_instances_give_one_row_each(
    scp, db_session_factory, make_series
) -> None:
    """Four associations at once, each with its own series and all with one shared series (the
    same SOP instances racing): every store succeeds and every instance has exactly one row."""
    shared = make_series("shared")[:4]
    own = [make_series(f"own{i}")[:3] for i in range(4)]
    results: list[subprocess.CompletedProcess[str]] = []
    lock = threading.Lock()

    def send(paths: list[Path]) -> None:
        result = storescu(scp.port, paths)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send, args=([*shared, *mine],)) for mine in own]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(succeeded(r, len(shared) + 3) for r in results), [r.stdout[-2000:] for r in results]
    uids = uids_of([*shared, *(p for mine in own for p in mine)])
    with db_session_factory() as session:
        counts = dict(
            session.execute(
                sa.select(Instance.sop_instance_uid, sa.func.count())
                .where(Instance.sop_instance_uid.in_(uids))
                .group_by(Instance.sop_instance_uid)
            ).all()
        )
    assert counts == dict.fromkeys(uids, 1)


def test_reconcile_stops_between_batches_when_asked(db_session_factory, make_series, tmp_path):
    spool = tmp_path / "spool"
    paths = make_series("stop")[:3]
    uids = uids_of(paths)
    for uid, path in zip(uids, paths, strict=True):
        target = spool_path(spool, uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    stop = threading.Event()
    stop.set()
    assert reconcile_spool(spool, db_session_factory, batch=1, stop=stop).recorded == 0
    assert instance_rows(db_session_factory, uids) == {}
    assert reconcile_spool(spool, db_session_factory, batch=1).recorded == 3
    assert sorted(instance_rows(db_session_factory, uids)) == sorted(uids)
