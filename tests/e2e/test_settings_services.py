"""Every service command honours the environment, and an option given beats it (containers
and Kubernetes configure by environment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.e2e.harness import REPO, free_port, port_open, wait_for

RAFSS = [sys.executable, "-m", "rafss_core.cli"]


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFSS_")}
    env["RAFSS_MIN_FREE_DISK_MB"] = "16"
    env.update(values)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen([*RAFSS, *args], env=env, cwd=REPO,
                                        stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        """The output with whitespace collapsed (rich wraps long log lines)."""
        return " ".join(self.log.read_text(errors="replace").split())

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"exited {self.process.returncode}:\n{self.text()[-3000:]}")
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def run(tmp_path):
    started: list[Proc] = []

    def start(args: list[str], **env: str) -> Proc:
        p = Proc(args, _env(**env), tmp_path / f"proc-{len(started)}.log")
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def _echo(port: int, calling: str = "NOBODY") -> bool:
    """C-ECHO from an AE title no allow-list contains: True when the SCP admits it."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port)
    ok = assoc.is_established
    if ok:
        assoc.release()
    return ok


def _listening(proc: Proc, port: int) -> bool:
    return proc.alive() and port_open(port)


def test_scp_environment_then_option(run, migrated_database_url, tmp_path):
    env_port, opt_port = free_port(), free_port()
    common = {"RAFSS_DATABASE_URL": migrated_database_url, "RAFSS_DATA_DIR": str(tmp_path)}
    p = run(["scp"], **common, RAFSS_SCP_PORT=str(env_port), RAFSS_AE_TITLE="ENVAE",
            RAFSS_ALLOW_ANY_AE="true")
    wait_for(lambda: _listening(p, env_port), 60, "the SCP on the environment's port")
    assert _echo(env_port)  # RAFSS_ALLOW_ANY_AE honoured
    wait_for(lambda: "Storage SCP ENVAE listening" in p.text(), 10, "the AE title log")
    p.stop()
    p = run(["scp", "--port", str(opt_port), "--ae-title", "OPTAE", "--no-allow-any-ae"],
            **common, RAFSS_SCP_PORT=str(env_port), RAFSS_AE_TITLE="ENVAE",
            RAFSS_ALLOW_ANY_AE="true")
    wait_for(lambda: _listening(p, opt_port), 60, "the SCP on the option's port")
    assert not port_open(env_port)
    assert not _echo(opt_port)  # the option beat the environment: the allow-list is on
    assert "Storage SCP OPTAE listening" in p.text()


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_api_environment_then_option(run, migrated_database_url, tmp_path):
    env_port, opt_port = free_port(), free_port()
    common = {"RAFSS_DATABASE_URL": migrated_database_url, "RAFSS_DATA_DIR": str(tmp_path)}
    p = run(["api"], **common, RAFSS_API_PORT=str(env_port))
    wait_for(lambda: p.alive() and _health(env_port), 60, "the API on the environment's port")
    p.stop()
    p = run(["api", "--port", str(opt_port)], **common, RAFSS_API_PORT=str(env_port))
    wait_for(lambda: p.alive() and _health(opt_port), 60, "the API on the option's port")
    assert not _health(env_port)


def test_worker_environment_then_option(run, migrated_database_url, tmp_path):
    common = {"RAFSS_DATABASE_URL": migrated_database_url, "RAFSS_DATA_DIR": str(tmp_path),
              "RAFSS_BROKER_URL": "redis://127.0.0.1:6379/14"}
    p = run(["worker", "--no-loops"], **common, RAFSS_WORKER_CONCURRENCY="2",
            RAFSS_WORKER_QUEUES="io")
    wait_for(lambda: p.alive() and "worker: pool solo, concurrency 2, queues io" in p.text(),
             120, "the worker's settings from the environment")
    p.stop()
    p = run(["worker", "--no-loops", "--queues", "model", "--concurrency", "1"], **common,
            RAFSS_WORKER_CONCURRENCY="2", RAFSS_WORKER_QUEUES="io")
    wait_for(lambda: p.alive() and "worker: pool solo, concurrency 1, queues model" in p.text(),
             120, "the options beating the environment")


def test_up_environment_then_option(run, tmp_path):
    env_port, opt_port, api_port = free_port(), free_port(), free_port()
    env = {"RAFSS_DATA_DIR": str(tmp_path / "data"), "RAFSS_MODELS": "tiny-random",
           "RAFSS_SCP_PORT": str(env_port), "RAFSS_API_PORT": str(api_port),
           "RAFSS_ALLOW_ANY_AE": "true"}
    p = run(["up"], **env)
    wait_for(lambda: _listening(p, env_port), 180, "rafss up's SCP on the environment's port")
    assert _echo(env_port)
    wait_for(lambda: _health(api_port), 60, "rafss up's API on the environment's port")
    assert "backend sam2-memory, models tiny-random" in p.text()  # RAFSS_MODELS honoured
    p.stop()
    p = run(["up", "--scp-port", str(opt_port), "--no-allow-any-ae"], **env)
    wait_for(lambda: _listening(p, opt_port), 180, "rafss up's SCP on the option's port")
    assert not port_open(env_port) and not _echo(opt_port)
