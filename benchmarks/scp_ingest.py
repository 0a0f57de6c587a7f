"""Storage SCP ingest throughput: RAFSS (spool + Postgres) beside dcmtk's storescp, same files.

Builds N MR instances from ACDC volumes (series spread over four folders), then sends all of them

- in *one* storescu association, and
- in *four concurrent* associations (four storescu processes, one folder each),

to (a) the RAFSS Storage SCP, which fsyncs each file into the spool, renames it, fsyncs the
directory and records the instance in a real embedded PostgreSQL before it answers success
(allow-list checked at association; a fresh database and spool for every run), and (b) dcmtk
``storescp -od DIR`` writing plain files (no fsync; ``--fork`` for the concurrent case, so that
it serves the four associations at once as RAFSS does). Each case runs ``--repeat`` times and
the median is reported; prints instances/second and the ratio RAFSS / storescp per case.

    python benchmarks/scp_ingest.py [--instances 400] [--repeat 3] [--json]

Figures only: nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from rafss_core.store import admin  # noqa: E402
from rafss_core.store.embedded import embedded_url, stop_embedded  # noqa: E402
from rafss_core.store.engine import make_engine, session_factory  # noqa: E402
from rafss_core.store.models import Instance  # noqa: E402
from rafss_core.store.repositories.sources import add_allowed_source  # noqa: E402
from services.scp import ScpConfig, StorageSCP  # noqa: E402
from tests.conftest import create_database  # noqa: E402
from tests.factories import acdc_case, volume_to_mr_series  # noqa: E402
from tests.integration.services.peers import HOST, dcmtk_storescp  # noqa: E402

CASES = ("patient001_frame01", "patient002_frame01", "patient003_frame01", "patient004_frame01")
PARTS = 4  # concurrent associations in the second case


def build_files(out_dir: Path, count: int) -> list[Path]:
    """``count`` MR instances: ACDC series written repeatedly with fresh UIDs, series ``i`` in
    ``out_dir/part{i % 4}`` (each folder is one association's share in the concurrent case)."""
    files: list[Path] = []
    volumes = [acdc_case(case)[0] for case in CASES]
    i = 0
    while len(files) < count:
        volume = volumes[i % len(volumes)]
        target = out_dir / f"part{i % PARTS}" / f"s{i:03d}"
        files += volume_to_mr_series(volume, target, seed=f"bench-{i}")
        i += 1
    for extra in files[count:]:
        extra.unlink()
    return files[:count]


def timed_send(port: int, folders: Sequence[Path], count: int, called_ae: str, work: Path) -> float:
    """Send ``folders`` to the SCP, one storescu process (one association) per folder, all at
    once; the wall time until the last one is done. Exits unless all ``count`` succeeded."""
    env = dict(os.environ, TCP_NODELAY="1")  # storescu: send without Nagle delays
    logs = [work / f"storescu-{uuid.uuid4().hex[:8]}.log" for _ in folders]
    cmd = ["storescu", "-v", "-nh", "-aet", "STORESCU", "-aec", called_ae, "+sd", "+r", HOST,
           str(port)]  # fmt: skip
    os.sync()  # earlier runs' dirty pages must not be flushed on this run's time (fsyncs)
    start = time.perf_counter()
    processes = []
    for folder, log in zip(folders, logs, strict=True):
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen([*cmd, str(folder)], stdout=out, stderr=subprocess.STDOUT,
                                 env=env)
            )
    codes = [p.wait() for p in processes]
    elapsed = time.perf_counter() - start
    output = "".join(log.read_text(errors="replace") for log in logs)
    sent = output.count("Received Store Response (Success)")
    if any(codes) or sent != count:
        raise SystemExit(f"storescu stored {sent}/{count} to {called_ae}:\n{output[-3000:]}")
    return elapsed


def rafss_run(server_url: str, work: Path, folders: Sequence[Path], count: int) -> float:
    """One timed send to a fresh RAFSS SCP (fresh database, fresh spool); checks every row."""
    name = f"rafss_bench_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    admin.upgrade(url=url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with factory.begin() as session:
        add_allowed_source(session, "STORESCU")
    run_dir = work / name
    scp = StorageSCP(
        ScpConfig(spool_dir=run_dir / "spool", quarantine_dir=run_dir / "q", port=0), factory
    )
    scp.start()
    try:
        seconds = timed_send(scp.port, folders, count, "RAFSS", work)
    finally:
        scp.stop()
    with factory() as session:
        rows = session.execute(sa.select(sa.func.count()).select_from(Instance)).scalar_one()
    engine.dispose()
    subprocess.run(["rm", "-rf", str(run_dir)], check=False)
    if rows != count:
        raise SystemExit(f"RAFSS recorded {rows} of {count} instances")
    return seconds


def storescp_run(work: Path, folders: Sequence[Path], count: int, *, fork: bool,
                 nagle: bool = False) -> float:
    """One timed send to dcmtk storescp writing plain files. ``-pdu``: the same 128 KiB maximum
    PDU that storescu offers RAFSS (dcmtk's default is 16 KiB). dcmtk leaves Nagle's algorithm
    on unless TCP_NODELAY=1 is in its environment, which costs it ~40 ms per instance: the
    baseline is storescp at its best (TCP_NODELAY=1); ``nagle``: dcmtk's default instead."""
    out = work / f"storescp-{uuid.uuid4().hex[:8]}"
    extra = ["-pdu", "131072", *(["--fork"] if fork else [])]
    saved = os.environ.pop("TCP_NODELAY", None)
    if not nagle:
        os.environ["TCP_NODELAY"] = "1"
    try:
        with dcmtk_storescp(out, extra=extra) as dcmtk:
            seconds = timed_send(dcmtk.port, folders, count, dcmtk.ae_title, work)
    finally:
        os.environ.pop("TCP_NODELAY", None)
        if saved is not None:
            os.environ["TCP_NODELAY"] = saved
    subprocess.run(["rm", "-rf", str(out)], check=False)
    return seconds


def median_rate(count: int, repeat: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    """Instances/second of the median run, and every run's seconds."""
    seconds = [run() for _ in range(repeat)]
    return count / statistics.median(seconds), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median reported)")
    parser.add_argument("--with-nagle", action="store_true",
                        help="also time storescp with dcmtk's default (Nagle on; slow)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="rafss-scp-bench-"))
    os.chmod(work, 0o755)  # the embedded server runs as its own user
    pgdata = work / "pg"
    files = build_files(work / "files", args.instances)
    count = len(files)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    one = [work / "files"]
    four = sorted(p for p in (work / "files").iterdir() if p.is_dir())
    server_url = embedded_url(pgdata)
    result: dict[str, object] = {"instances": count, "megabytes": round(size_mb, 1),
                                 "repeat": args.repeat}
    try:
        for label, folders in (("1_association", one), (f"{len(four)}_associations", four)):
            rafss, rafss_s = median_rate(
                count, args.repeat, lambda f=folders: rafss_run(server_url, work, f, count))
            dcmtk, dcmtk_s = median_rate(
                count, args.repeat,
                lambda f=folders: storescp_run(work, f, count, fork=len(f) > 1))
            result[label] = {
                "rafss_instances_per_s": round(rafss, 1),
                "storescp_instances_per_s": round(dcmtk, 1),
                "ratio_rafss_to_storescp": round(rafss / dcmtk, 3),
                "rafss_seconds": [round(s, 3) for s in rafss_s],
                "storescp_seconds": [round(s, 3) for s in dcmtk_s],
            }
        if args.with_nagle:
            nagle_s = storescp_run(work, one, count, fork=False, nagle=True)
            result["storescp_default_nagle_instances_per_s"] = round(count / nagle_s, 1)
    finally:
        stop_embedded(pgdata)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    print(f"{count} MR instances ({size_mb:.1f} MB); median of {args.repeat} runs per case")
    print("RAFSS SCP: spool fsync + rename + dir fsync + Postgres row before success; "
          "dcmtk storescp: plain files, no fsync")
    print(f"{'case':<16} {'RAFSS /s':>10} {'storescp /s':>12} {'ratio':>7}")
    for label in (k for k in result if k.endswith(("_association", "_associations"))):
        row = result[label]
        assert isinstance(row, dict)
        print(f"{label.replace('_', ' '):<16} {row['rafss_instances_per_s']:>10.1f} "
              f"{row['storescp_instances_per_s']:>12.1f} {row['ratio_rafss_to_storescp']:>7.3f}")
    if args.with_nagle:
        print(f"storescp with dcmtk's default (Nagle on), 1 association: "
              f"{result['storescp_default_nagle_instances_per_s']} instances/s")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
