"""Storage SCP ingest throughput: RAFSS (spool + Postgres) beside dcmtk's storescp, same files.

Builds N MR instances from ACDC volumes, then sends all of them with *one* storescu association
to (a) the RAFSS Storage SCP, which fsyncs each file into the spool, fsyncs the directory and
records the instance in a real embedded PostgreSQL (one transaction per instance, allow-list
checked at association), and (b) dcmtk ``storescp -od DIR`` writing plain files (no fsync).
One run each; prints instances/second and the ratio.

    python benchmarks/scp_ingest.py [--instances 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from rafss_core.store import admin  # noqa: E402
from rafss_core.store.embedded import embedded_url, stop_embedded  # noqa: E402
from rafss_core.store.engine import make_engine, session_factory  # noqa: E402
from rafss_core.store.repositories.sources import add_allowed_source  # noqa: E402
from services.scp import ScpConfig, StorageSCP  # noqa: E402
from tests.factories import acdc_case, volume_to_mr_series  # noqa: E402
from tests.integration.services.peers import (  # noqa: E402
    dcmtk_storescp,
    storescu,
)

CASES = ("patient001_frame01", "patient002_frame01", "patient003_frame01", "patient004_frame01")


def build_files(out_dir: Path, count: int) -> list[Path]:
    """``count`` MR instances: ACDC series written repeatedly with fresh UIDs."""
    files: list[Path] = []
    volumes = [acdc_case(case)[0] for case in CASES]
    i = 0
    while len(files) < count:
        volume = volumes[i % len(volumes)]
        files += volume_to_mr_series(volume, out_dir / f"s{i:03d}", seed=f"bench-{i}")
        i += 1
    for extra in files[count:]:
        extra.unlink()
    return files[:count]


def timed_send(port: int, files_dir: Path, count: int, called_ae: str) -> float:
    start = time.perf_counter()
    result = storescu(port, [files_dir], called_ae=called_ae, extra=["+sd", "+r"])
    elapsed = time.perf_counter() - start
    output = result.stdout + result.stderr
    sent = output.count("Received Store Response (Success)")
    if result.returncode != 0 or sent != count:
        raise SystemExit(f"storescu stored {sent}/{count} to {called_ae}:\n{output[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="rafss-scp-bench-"))
    os.chmod(work, 0o755)  # the embedded server runs as its own user
    pgdata = work / "pg"
    files = build_files(work / "files", args.instances)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    server_url = embedded_url(pgdata)
    try:
        name = f"rafss_bench_{uuid.uuid4().hex[:8]}"
        engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        url = make_engine(server_url).url.set(database=name).render_as_string(False)
        admin.upgrade(url=url)
        db_engine = make_engine(url)
        factory = session_factory(db_engine)
        with factory.begin() as session:
            add_allowed_source(session, "STORESCU")
        os.environ["TCP_NODELAY"] = "1"  # storescu: send without Nagle delays
        scp = StorageSCP(
            ScpConfig(spool_dir=work / "spool", quarantine_dir=work / "q", port=0), factory
        )
        scp.start()
        try:
            rafss_s = timed_send(scp.port, work / "files", len(files), "RAFSS")
        finally:
            scp.stop()
        with factory() as session:
            rows = session.execute(sa.text("SELECT count(*) FROM instances")).scalar_one()
        db_engine.dispose()
        if rows != len(files):
            raise SystemExit(f"RAFSS recorded {rows} of {len(files)} instances")
        # -pdu: the same 128 KiB maximum PDU that storescu offers RAFSS (dcmtk's default is 16 KiB).
        # dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1 is in its environment, which
        # costs it ~40 ms per instance here: the baseline is storescp at its best (TCP_NODELAY=1);
        # its default is measured too, for reference.
        os.environ.pop("TCP_NODELAY", None)
        with dcmtk_storescp(work / "storescp-default", extra=["-pdu", "131072"]) as dcmtk:
            os.environ["TCP_NODELAY"] = "1"
            default_s = timed_send(dcmtk.port, work / "files", len(files), dcmtk.ae_title)
        with dcmtk_storescp(work / "storescp", extra=["-pdu", "131072"]) as dcmtk:
            dcmtk_s = timed_send(dcmtk.port, work / "files", len(files), dcmtk.ae_title)
    finally:
        stop_embedded(pgdata)
        subprocess.run(["rm", "-rf", str(work)], check=False)

    rafss_ips = len(files) / rafss_s
    dcmtk_ips = len(files) / dcmtk_s
    result = {
        "instances": len(files),
        "megabytes": round(size_mb, 1),
        "rafss_seconds": round(rafss_s, 3),
        "rafss_instances_per_s": round(rafss_ips, 1),
        "storescp_seconds": round(dcmtk_s, 3),
        "storescp_instances_per_s": round(dcmtk_ips, 1),
        "ratio_rafss_to_storescp": round(rafss_ips / dcmtk_ips, 3),
        "storescp_default_nagle_instances_per_s": round(len(files) / default_s, 1),
    }
    print(f"{len(files)} MR instances ({size_mb:.1f} MB), one storescu association each")
    print(f"RAFSS SCP (spool fsync + Postgres): {rafss_ips:8.1f} instances/s ({rafss_s:.2f} s)")
    print(f"dcmtk storescp (files only):       {dcmtk_ips:8.1f} instances/s ({dcmtk_s:.2f} s)")
    print(f"  storescp with dcmtk's default (Nagle on): {len(files) / default_s:.1f} instances/s")
    print(f"ratio RAFSS / storescp:            {rafss_ips / dcmtk_ips:8.3f}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
