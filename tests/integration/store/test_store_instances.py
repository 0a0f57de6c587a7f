"""Idempotent instance recording on a real server, including concurrent writers."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rafss_core.store.enums import InstanceState, SeriesState
from rafss_core.store.models import Instance, Series, Study
from rafss_core.store.repositories import InstanceGeometry, InstanceRecord, record_instance


def _uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _record(study: str, series: str, sop: str) -> InstanceRecord:
    return InstanceRecord(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        spool_path=f"/spool/{sop}.dcm",
        modality="MR",
        body_part="HEART",
        series_description="cine sax",
        calling_ae="MODALITY1",
        calling_ip="10.0.0.7",
        geometry=InstanceGeometry(
            rows=256,
            columns=216,
            image_position_patient=(1.0, 2.0, 3.0),
            image_orientation_patient=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            pixel_spacing=(1.5, 1.5),
            slice_thickness=8.0,
        ),
    )


def _count(engine: Engine, model: type, column: str, value: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(model).where(getattr(model, column) == value)
        ).scalar_one()


def test_same_sop_instance_uid_twice_gives_one_row(
    db_session_factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    rec = _record(_uid(), _uid(), _uid())
    with db_session_factory.begin() as s:
        first = record_instance(s, rec)
    with db_session_factory.begin() as s:
        second = record_instance(s, rec)
    assert first.created and not second.created
    ids = (first.study_id, first.series_id, first.instance_id)
    assert (second.study_id, second.series_id, second.instance_id) == ids
    assert _count(migrated_engine, Instance, "sop_instance_uid", rec.sop_instance_uid) == 1
    assert _count(migrated_engine, Series, "series_instance_uid", rec.series_instance_uid) == 1
    assert _count(migrated_engine, Study, "study_instance_uid", rec.study_instance_uid) == 1
    with db_session_factory() as s:
        row = s.execute(
            sa.select(Instance).where(Instance.sop_instance_uid == rec.sop_instance_uid)
        ).scalar_one()
        assert row.image_orientation_patient == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        assert row.spool_path == rec.spool_path


def test_instances_of_one_series_share_study_and_series(
    db_session_factory: sessionmaker[Session], migrated_engine: Engine
) -> None:
    study, series = _uid(), _uid()
    with db_session_factory.begin() as s:
        results = [record_instance(s, _record(study, series, _uid())) for _ in range(3)]
    assert len({r.series_id for r in results}) == 1
    assert len({r.instance_id for r in results}) == 3
    with migrated_engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count())
            .select_from(Instance)
            .where(Instance.series_id == results[0].series_id)
        ).scalar_one()
    assert n == 3


def test_new_instance_reopens_a_closed_series(db_session_factory: sessionmaker[Session]) -> None:
    study, series = _uid(), _uid()
    first = _record(study, series, _uid())
    with db_session_factory.begin() as s:
        rec = record_instance(s, first)
        s.execute(
            sa.update(Series).where(Series.id == rec.series_id).values(state=SeriesState.CLOSED)
        )
    with db_session_factory.begin() as s:  # a duplicate changes nothing
        record_instance(s, first)
    with db_session_factory() as s:
        assert s.get(Series, rec.series_id).state == SeriesState.CLOSED  # type: ignore[union-attr]
    with db_session_factory.begin() as s:  # a late new instance reopens the series
        record_instance(s, _record(study, series, _uid()))
    with db_session_factory() as s:
        assert s.get(Series, rec.series_id).state == SeriesState.OPEN  # type: ignore[union-attr]


def test_two_concurrent_writers_on_the_same_instance_give_one_row(
    migrated_engine: Engine,
) -> None:
    """Writer B inserts while writer A's insert of the same SOP is still uncommitted.

    B must wait for A (it is observed waiting on a lock in pg_stat_activity), then find the
    row instead of failing or duplicating it.
    """
    rec = _record(_uid(), _uid(), _uid())
    factory = sessionmaker(migrated_engine)
    b_result: list[object] = []
    b_error: list[BaseException] = []

    session_a = factory()
    a_result = record_instance(session_a, rec)  # uncommitted: holds the unique key
    a_pid = session_a.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

    def writer_b() -> None:
        try:
            with factory.begin() as s:
                b_result.append(record_instance(s, rec))
        except BaseException as exc:
            b_error.append(exc)

    thread = threading.Thread(target=writer_b)
    thread.start()
    with migrated_engine.connect() as probe:
        # wait until B is blocked behind A's transaction (a wait, not a timed assertion)
        while thread.is_alive():
            blocked = probe.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :a = ANY(pg_blocking_pids(pid))"
                ),
                {"a": a_pid},
            ).scalar_one()
            probe.commit()
            if blocked:
                break
    assert thread.is_alive(), "writer B finished before A committed: no conflict was exercised"
    session_a.commit()
    session_a.close()
    thread.join()

    assert not b_error, b_error
    assert a_result.created
    assert len(b_result) == 1 and not b_result[0].created  # type: ignore[attr-defined]
    assert b_result[0].instance_id == a_result.instance_id  # type: ignore[attr-defined]
    assert _count(migrated_engine, Instance, "sop_instance_uid", rec.sop_instance_uid) == 1


def test_many_racing_writers_give_one_row(migrated_engine: Engine) -> None:
    rec = _record(_uid(), _uid(), _uid())
    factory = sessionmaker(migrated_engine)
    n = 8
    barrier = threading.Barrier(n)

    def write() -> bool:
        with factory.begin() as s:
            s.execute(sa.text("SELECT 1"))  # own connection checked out before the race
            barrier.wait()
            return record_instance(s, rec).created

    with ThreadPoolExecutor(n) as pool:
        created = list(pool.map(lambda _: write(), range(n)))
    assert created.count(True) == 1
    assert _count(migrated_engine, Instance, "sop_instance_uid", rec.sop_instance_uid) == 1
    assert _count(migrated_engine, Series, "series_instance_uid", rec.series_instance_uid) == 1


def _state(factory: sessionmaker[Session], sop: str) -> str:
    with factory() as s:
        query = sa.select(Instance.state).where(Instance.sop_instance_uid == sop)
        return str(s.execute(query).scalar_one())


def test_invalid_mark_on_new_rows_and_on_duplicates(
    db_session_factory: sessionmaker[Session],
) -> None:
    """``invalid`` marks the new row, and a duplicate's existing row; a valid duplicate of an
    invalid instance does not clear the mark."""
    bad = _record(_uid(), _uid(), _uid())
    with db_session_factory.begin() as s:
        assert record_instance(s, bad, invalid=True).created
    assert _state(db_session_factory, bad.sop_instance_uid) == InstanceState.INVALID
    with db_session_factory.begin() as s:
        assert not record_instance(s, bad).created
    assert _state(db_session_factory, bad.sop_instance_uid) == InstanceState.INVALID

    good = _record(_uid(), _uid(), _uid())
    with db_session_factory.begin() as s:
        first = record_instance(s, good)
    assert _state(db_session_factory, good.sop_instance_uid) == InstanceState.RECEIVED
    with db_session_factory.begin() as s:
        again = record_instance(s, good, invalid=True)
    assert not again.created and again.instance_id == first.instance_id
    assert _state(db_session_factory, good.sop_instance_uid) == InstanceState.INVALID


def test_one_statement_on_an_autocommit_connection_is_its_own_transaction(
    migrated_engine: Engine,
) -> None:
    """How the SCP records (``scp_engine``): committed when the statement returns."""
    from rafss_core.store.engine import scp_engine

    rec = _record(_uid(), _uid(), _uid())
    engine = scp_engine(migrated_engine, pool_size=1)
    try:
        with engine.connect() as conn:
            recorded = record_instance(conn, rec)
            # seen by another connection before this one is even closed
            assert _count(migrated_engine, Instance, "sop_instance_uid", rec.sop_instance_uid) == 1
        with engine.connect() as conn:
            again = record_instance(conn, rec)
    finally:
        engine.dispose()
    assert recorded.created and not again.created
    assert (again.study_id, again.series_id, again.instance_id) == (
        recorded.study_id, recorded.series_id, recorded.instance_id)
