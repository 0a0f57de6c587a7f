"""End-to-end latency: N series through `rafss up` (CPU, tiny-random) to a storescp PACS.

For each series: seconds from the last C-STORE's completion to the SEG arriving at the PACS.
Prints median and max latency and slices per second (all slices / wall time from the first
send to the last SEG). The series quiet period (``--quiet``, default 1 s) is part of the
latency, as in production.

    python benchmarks/e2e_latency.py [--series 5] [--quiet 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import Rafss, StoreSCP, storescu, wait_for  # noqa: E402
from tests.factories import acdc_case, volume_to_mr_series  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--series", type=int, default=5)
    ap.add_argument("--quiet", type=float, default=1.0, help="series quiet period, seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tqdm import tqdm

    work = Path(tempfile.mkdtemp(prefix="rafss-e2e-bench-"))
    cases = ["patient001_frame01", "patient001_frame02", "patient007_frame01",
             "patient007_frame02", "patient008_frame01", "patient008_frame02"]
    series, slices = [], 0
    for i in range(args.series):
        volume, _ = acdc_case(cases[i % len(cases)])
        series.append(volume_to_mr_series(volume, work / f"s{i}", seed=f"bench-{i}"))
        slices += volume.num_slices
    pacs = StoreSCP(work / "pacs").start()
    rafss = Rafss(work / "data", quiet_seconds=args.quiet).start()
    try:
        rafss.setup_cardiac(pacs.port, ref_patients="patient003,patient004")
        # warm-up: the worker loads its models on the first job
        warm, _ = acdc_case("patient010_frame01")
        storescu(rafss.scp_port, volume_to_mr_series(warm, work / "warm", seed="warm"))
        wait_for(lambda: len(pacs.received()) >= 1, 300, "the warm-up SEG")
        latencies = []
        t_start = time.monotonic()
        for files in tqdm(series, desc="series", unit="series"):
            before = len(pacs.received())
            assert storescu(rafss.scp_port, files) == 0
            t_sent = time.monotonic()
            wait_for(lambda b=before: len(pacs.received()) > b, 600, "the SEG", every=0.05)
            latencies.append(time.monotonic() - t_sent)
        wall = time.monotonic() - t_start
    finally:
        rafss.stop()
        pacs.stop()
    figures = {
        "series": args.series, "slices": slices, "quiet_seconds": args.quiet,
        "models": "tiny-random", "device": "cpu", "broker": "embedded (sqla on Postgres)",
        "latency_median_s": round(statistics.median(latencies), 2),
        "latency_max_s": round(max(latencies), 2),
        "slices_per_second": round(slices / wall, 2),
    }
    for key, value in figures.items():
        print(f"{key:22s} {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
