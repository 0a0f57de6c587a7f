"""Fault tests with real processes killed or restarted by signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

import pydicom
import pytest

from tests.e2e.harness import RedisServer, StoreSCP, pg_ctl, sql, storescu, wait_for


def _job_state(data_dir):
    rows = sql(data_dir, "SELECT state, attempts FROM jobs ORDER BY id")
    return rows[0] if rows else None


def _exactly_one_seg(data_dir, pacs) -> None:
    received = wait_for(pacs.segs, 180, "the SEG at the PACS")
    wait_for(lambda: (_job_state(data_dir) or ("",))[0] == "succeeded", 60, "job succeeded")
    # give a duplicate delivery every chance to show up before counting
    wait_for(lambda: sql(data_dir, "SELECT 1 FROM deliveries WHERE status = 'succeeded'"), 30,
             "the delivery to be recorded")
    received = pacs.segs()
    assert len(received) == 1, f"expected exactly one SEG, got {len(received)}"
    assert len(wait_for(pacs.reports, 60, "the volume report")) == 1
    assert pydicom.dcmread(received[0]).Modality == "SEG"
    assert sql(data_dir, "SELECT count(*) FROM results")[0][0] == 1
    assert sql(data_dir, "SELECT count(*), min(status) FROM deliveries")[0] == (1, "succeeded")


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_worker_killed_mid_job_completes_exactly_once(broker, make_rafss, pacs, series_files,
                                                       tmp_path):
    redis = RedisServer(tmp_path / "redis").start() if broker == "redis" else None
    try:
        env = {"RAFSS_BROKER_URL": redis.url} if redis else {}
        rafss = make_rafss(env_extra=env).start()
        rafss.setup_cardiac(pacs.port)
        first_worker = rafss.worker_pid()
        assert storescu(rafss.scp_port, series_files) == 0
        wait_for(lambda: (_job_state(rafss.data_dir) or ("",))[0] == "running", 120,
                 "the job to start running", every=0.1)
        os.kill(first_worker, signal.SIGKILL)
        _exactly_one_seg(rafss.data_dir, pacs)
        state, attempts = _job_state(rafss.data_dir)
        assert state == "succeeded" and attempts >= 2  # the killed attempt plus the one that won
        assert rafss.worker_pid() != first_worker  # the supervisor restarted the worker
    finally:
        if redis:
            redis.stop()


def test_destination_down_then_back(make_rafss, series_files, tmp_path):
    pacs = StoreSCP(tmp_path / "pacs-late")  # not started yet: the destination is down
    rafss = make_rafss().start()
    rafss.setup_cardiac(pacs.port)
    assert storescu(rafss.scp_port, series_files) == 0
    failed = wait_for(lambda: sql(rafss.data_dir, "SELECT attempts, status, last_error FROM "
                                  "deliveries WHERE attempts >= 2"), 180,
                      "two failed delivery attempts")
    assert failed[0][1] == "failed" and failed[0][2]
    pacs.start()
    try:
        received = wait_for(pacs.segs, 120, "the SEG once the destination is back")
        assert len(received) == 1
        attempts, status = wait_for(lambda: sql(
            rafss.data_dir, "SELECT attempts, status FROM deliveries WHERE status = "
            "'succeeded'"), 30, "the delivery to be marked succeeded")[0]
        assert status == "succeeded" and attempts >= 3
    finally:
        pacs.stop()


def test_postgres_restart_while_instances_arrive(make_rafss, series_files, tmp_path):
    """Every instance acknowledged with 0x0000 ends up recorded.

    While the database is down the SCP still writes the file to the spool, then answers with a
    failure status (0xA700, out of resources) because it could not record it; storescu reports
    the failure. The spooled file is recorded by the reconciliation loop once the database is
    back, and a resend is idempotent.
    """
    rafss = make_rafss().start()
    rafss.cli("sources", "allow", "STORESCU")
    outcomes: dict[str, int] = {}
    more = [tmp_path / f"copy{i}" for i in range(3)]
    files = list(series_files)
    from tests.factories import acdc_case, volume_to_mr_series

    volume, _ = acdc_case("patient002_frame01")
    for i, d in enumerate(more):
        files += volume_to_mr_series(volume, d, seed=f"restart-{i}")

    def send_all() -> None:
        for f in files:
            outcomes[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID] = \
                storescu(rafss.scp_port, [f])

    sender = threading.Thread(target=send_all)
    sender.start()
    wait_for(lambda: len(outcomes) >= 5, 120, "the first instances to arrive")
    pg_ctl(rafss.data_dir, "restart", "-m", "fast")
    sender.join(timeout=600)
    acked = {uid for uid, rc in outcomes.items() if rc == 0}
    assert len(outcomes) == len(files) and len(acked) >= 5

    def recorded() -> set[str]:
        return {r[0] for r in sql(rafss.data_dir, "SELECT sop_instance_uid FROM instances")}

    try:
        wait_for(lambda: acked <= recorded(), 120, "every acknowledged instance to be recorded")
        # refused ones were spooled and are reconciled too: nothing received is lost
        wait_for(lambda: set(outcomes) <= recorded(), 120, "spooled instances to be reconciled")
    finally:
        rafss.stop()
        # the restarted postmaster is no longer pgserver's child: stop it ourselves
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            pg_ctl(rafss.data_dir, "stop", "-m", "fast")


def test_broker_restart_loses_no_job(make_rafss, pacs, series_files, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        rafss = make_rafss(env_extra={"RAFSS_BROKER_URL": redis.url}).start()
        rafss.setup_cardiac(pacs.port)
        redis.stop()  # broker down (and, with --save "", its queues are gone)
        assert storescu(rafss.scp_port, series_files) == 0
        wait_for(lambda: _job_state(rafss.data_dir), 60, "the job row")
        redis.start()  # same port: the broker is back, empty
        _exactly_one_seg(rafss.data_dir, pacs)
    finally:
        redis.stop()
