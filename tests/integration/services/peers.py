"""Real DICOM peers for the tests: dcmtk (storescu, storescp, echoscu, dcmcjpeg, dcmcrle),
Orthanc, and a self-signed certificate made with the openssl CLI. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0  # generous: only how long we wait for a server to come up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float = STARTUP_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def run(cmd: Sequence[str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )


def storescu(
    port: int,
    paths: Sequence[Path | str],
    *,
    calling_ae: str = "STORESCU",
    called_ae: str = "RAFSS",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Send files in one association (``-nh``: carry on after a failed store; ``-v``: log)."""
    cmd = ["storescu", "-v", "-nh", "-aet", calling_ae, "-aec", called_ae, *extra, HOST, str(port)]
    return run([*cmd, *map(str, paths)])


def echoscu(port: int, *, calling_ae: str = "ECHOSCU", called_ae: str = "RAFSS"):
    return run(["echoscu", "-aet", calling_ae, "-aec", called_ae, HOST, str(port)], timeout=60)


def compress(paths: Sequence[Path], out_dir: Path, tool: str) -> list[Path]:
    """Compressed copies (``dcmcjpeg``: JPEG lossless SV1; ``dcmcrle``: RLE lossless)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        target = out_dir / path.name
        result = run([tool, str(path), str(target)])
        assert result.returncode == 0, result.stderr
        out.append(target)
    return out


def self_signed_cert(directory: Path, common_name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate (with 127.0.0.1 and localhost as SANs) and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cert, key


@dataclass
class StoreSCP:
    """A running dcmtk ``storescp`` writing received files to ``directory``."""

    process: subprocess.Popen[bytes]
    port: int
    ae_title: str
    directory: Path
    log_path: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def associations(self) -> int:
        """How many associations it has accepted so far (port probes are not counted)."""
        return self.log_path.read_text(errors="replace").count("Association Acknowledged")


@contextmanager
def dcmtk_storescp(
    directory: Path,
    *,
    port: int | None = None,
    ae_title: str = "DCMTKSCP",
    extra: Sequence[str] = (),
) -> Iterator[StoreSCP]:
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = directory.parent / f"{directory.name}-storescp.log"
    # -v: log associations; +xa: accept all supported transfer syntaxes
    cmd = ["storescp", "-v", "-aet", ae_title, "+xa", *extra, "-od", str(directory), str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, what="storescp")
        assert process.poll() is None, log_path.read_text()
        yield StoreSCP(process, port, ae_title, directory, log_path)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Orthanc:
    process: subprocess.Popen[bytes]
    dicom_port: int
    http_port: int
    ae_title: str

    @property
    def dicomweb_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/dicom-web"

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=10) as rsp:
            return json.loads(rsp.read())

    def post(self, path: str, body: bytes) -> object:
        request = urllib.request.Request(
            f"http://{HOST}:{self.http_port}{path}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as rsp:
            return json.loads(rsp.read())

    def lookup(self, uid: str) -> list[dict[str, str]]:
        return self.post("/tools/lookup", uid.encode("ascii"))  # type: ignore[return-value]


@contextmanager
def orthanc(work_dir: Path, *, ae_title: str = "ORTHANC",
            dicomweb: bool = False) -> Iterator[Orthanc]:
    """Orthanc with a temporary configuration, storage and free ports, no remote access;
    ``dicomweb`` loads Debian's DICOMweb plugin (``orthanc-dicomweb``) at ``/dicom-web/``."""
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        raise AssertionError("Orthanc is not installed; install the Debian package 'orthanc'")
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    work_dir.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "rafss-test",
        "DicomAet": ae_title,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "StorageDirectory": str(work_dir / "storage"),
        "IndexDirectory": str(work_dir / "storage"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "Plugins": [],
    }
    if dicomweb:
        plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
        if not plugin.exists():
            raise AssertionError("Orthanc's DICOMweb plugin is not installed; install the "
                                 "Debian package 'orthanc-dicomweb'")
        config["Plugins"] = [str(plugin)]
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/",
                              "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
    config_path = work_dir / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = (work_dir / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(process, dicom_port, http_port, ae_title)

    def up() -> bool:
        if process.poll() is not None:
            return True
        try:
            server.get("/system")
            return port_open(dicom_port)
        except OSError:
            return False

    try:
        wait_until(up, what="Orthanc")
        assert process.poll() is None, (work_dir / "orthanc.log").read_text()[-2000:]
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
