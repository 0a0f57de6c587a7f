"""One machine behaving like many: separate processes for 2 SCPs, 3 workers (each with the
service loops), 1 API, an "external" Postgres (RAFSS_DATABASE_URL) and a real broker.
20 series go in concurrently from several storescu processes; every series is segmented
exactly once, every SEG reaches the PACS exactly once, and no instance is lost. Again with a
worker killed mid-run, and again on RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rafss_core.segmentation.volume import Volume
from tests.conftest import migrated_database
from tests.e2e.harness import ACDC, REPO, StoreSCP, free_port, port_open, wait_for
from tests.factories import acdc_case, volume_to_mr_series

RAFSS = [sys.executable, "-m", "rafss_core.cli"]
SERIES = 20
SLICES = 4
BROKERS = {"redis": "redis://127.0.0.1:6379/13", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}


def _purge(broker: str) -> None:
    """Start from an empty broker (other test runs share these servers)."""
    from kombu import Connection

    with Connection(broker) as conn:
        if broker.startswith("redis"):
            conn.default_channel.client.flushdb()
        else:
            for queue in ("io", "model"):
                try:
                    conn.default_channel.queue_purge(queue)
                except Exception:
                    conn.close()
                    conn.connect()


class Cluster:
    def __init__(self, root: Path, database_url: str, broker: str) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAFSS_")}
        self.env.update({
            "RAFSS_DATABASE_URL": database_url, "RAFSS_BROKER_URL": broker,
            "RAFSS_DATA_DIR": str(root / "shared"),  # the shared filesystem of all "hosts"
            "RAFSS_MODELS": "tiny-random", "RAFSS_BACKEND": "sam2-memory",
            "RAFSS_SERIES_QUIET_SECONDS": "2", "RAFSS_LOOP_INTERVAL_SECONDS": "0.5",
            "RAFSS_JOB_STALE_SECONDS": "8", "RAFSS_JOB_HEARTBEAT_SECONDS": "1",
            "RAFSS_DELIVERY_BACKOFF_SECONDS": "1", "RAFSS_ALLOW_ANY_AE": "true",
            "RAFSS_MIN_FREE_DISK_MB": "16",
            "PYTHONUNBUFFERED": "1"})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.scp_ports = [free_port(), free_port()]
        self.api_port = free_port()

    def cli(self, *args: str) -> str:
        done = subprocess.run([*RAFSS, *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def spawn(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen([*RAFSS, *args], env=self.env, cwd=REPO,
                                                stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> Cluster:
        for i, port in enumerate(self.scp_ports):
            self.spawn(f"scp{i}", "scp", "--port", str(port))
        self.spawn("api", "api", "--port", str(self.api_port))
        for i in range(3):
            self.spawn(f"worker{i}", "worker")
        wait_for(lambda: self._alive() and all(map(port_open, self.scp_ports))
                 and port_open(self.api_port), 120, "the SCPs and the API")
        return self

    def _alive(self) -> bool:
        for name, p in self.processes.items():
            if p.poll() is not None and not name.startswith("killed"):
                raise AssertionError(f"{name} exited {p.returncode}:\n"
                                     + (self.root / f"{name}.log").read_text()[-3000:])
        return True

    def busy(self, name: str) -> bool:
        """The worker process is running a segment job (``jobs.claimed_by`` is host:pid)."""
        pid = self.processes[name].pid
        return bool(self.rows("SELECT 1 FROM jobs WHERE kind = 'segment' AND state = 'running' "
                              f"AND claimed_by LIKE '%:{pid}'"))

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait()
        self.processes[f"killed-{name}"] = self.processes.pop(name)

    def stop(self) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()

    def rows(self, query: str) -> list[tuple]:
        import psycopg

        url = self.env["RAFSS_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            return list(conn.execute(query).fetchall())


def _studies(root: Path) -> list[list[Path]]:
    """20 small series (4 slices of ACDC patient001), each with its own UIDs."""
    volume, _ = acdc_case("patient001_frame01")
    small = Volume(np.ascontiguousarray(volume.array[3:3 + SLICES]), volume.spacing,
                   volume.origin, volume.direction, "MR")
    return [volume_to_mr_series(small, root / f"series{i:02d}", seed=f"{uuid.uuid4().hex}")
            for i in range(SERIES)]


def _send(port: int, files: list[Path]) -> int:
    return subprocess.run(["storescu", "-R", "-aet", "MODALITY", "-aec", "RAFSS", "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True,
                          timeout=300).returncode


@pytest.mark.parametrize(("broker", "kill_a_worker"),
                         [("redis", False), ("redis", True), ("rabbitmq", False)],
                         ids=["redis", "redis-worker-killed", "rabbitmq"])
def test_twenty_series_across_processes(broker, kill_a_worker, pg_server_url, tmp_path):
    _purge(BROKERS[broker])
    pacs = StoreSCP(tmp_path / "pacs").start()
    with migrated_database(pg_server_url, "rafss_hosts") as url:
        cluster = Cluster(tmp_path, url, BROKERS[broker])
        try:
            cluster.cli("destinations", "add", "pacs", f"PACS@127.0.0.1:{pacs.port}")
            cluster.cli("tasks", "create", "cardiac", "--modality", "MR", "--label", "1:RV",
                        "--label", "2:MYO", "--label", "3:LV", "--k", "2")
            cluster.cli("routes", "add", "--task", "cardiac", "--modality", "MR")
            cluster.cli("references", "import", "--task", "cardiac", "--images",
                        str(ACDC / "imagesTr"), "--labels", str(ACDC / "labelsTr"), "--cases",
                        "patient003_frame01", "--approve")
            studies = _studies(tmp_path / "studies")
            cluster.start()
            # 4 storescu processes at once, each sending 5 series, alternating the two SCPs
            batches = [(cluster.scp_ports[i % 2], [f for s in studies[i::4] for f in s])
                       for i in range(4)]
            with ThreadPoolExecutor(4) as pool:
                codes = list(pool.map(lambda b: _send(*b), batches))
            assert codes == [0, 0, 0, 0]
            if kill_a_worker:
                wait_for(lambda: cluster.busy("worker0"), 300, "worker0 running a job")
                cluster.kill("worker0")
            wait_for(lambda: len(pacs.segs()) >= SERIES, 600, "20 SEGs at the PACS")
            wait_for(lambda: cluster.rows(
                "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")[0][0] == 0,
                120, "every delivery settled")
        finally:
            cluster.stop()
            pacs.stop()
        instances = cluster.rows("SELECT count(*) FROM instances")[0][0]
        jobs = cluster.rows("SELECT series_id, state FROM jobs WHERE kind = 'segment'")
        results = cluster.rows("SELECT count(*), count(DISTINCT seg_sop_instance_uid) "
                               "FROM results")[0]
        attempts = max(a for (a,) in cluster.rows(
            "SELECT attempts FROM jobs WHERE kind = 'segment'"))
    assert instances == SERIES * SLICES  # nothing received was lost
    assert len(jobs) == SERIES and len({s for s, _ in jobs}) == SERIES  # each series once
    assert {state for _, state in jobs} == {"succeeded"}
    assert results == (SERIES, SERIES)
    segs = [pydicom.dcmread(p, stop_before_pixels=True) for p in pacs.segs()]
    assert len(segs) == SERIES and len({d.SOPInstanceUID for d in segs}) == SERIES  # once each
    assert {d.ReferencedSeriesSequence[0].SeriesInstanceUID for d in segs} == {
        pydicom.dcmread(s[0], stop_before_pixels=True).SeriesInstanceUID for s in studies}
    # the killed worker's job went back to the queue (stale heartbeat) and ran again
    assert (attempts >= 2) if kill_a_worker else attempts == 1
