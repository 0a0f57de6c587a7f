"""benchmarks/default_speed.py runs end to end (tiny sizes) and prints every stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import ACDC

pytestmark = [pytest.mark.slow, pytest.mark.data]
REPO = Path(__file__).resolve().parents[2]


def test_default_speed_prints_every_stage(tmp_path):
    out = tmp_path / "speed.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "default_speed.py"),
                    "--data", str(ACDC), "--refs", "1", "--slices", "2", "--long", "3",
                    "--repeats", "1", "--runtimes", "openvino fp32", "--json", str(out)],
                   check=True, cwd=REPO, capture_output=True, timeout=900)
    report = json.loads(out.read_text())
    rows = report["seconds_per_slice"]
    assert set(rows) == {"openvino fp32, cold", "openvino fp32, warm"}
    for row in rows.values():
        for stage in ("load", "read", "encode", "retrieve", "align", "decode", "merge",
                      "seg_write", "total"):
            assert row[stage] >= 0, stage
        assert row["total"] > row["encode"] > 0
    assert rows["openvino fp32, cold"]["load"] > rows["openvino fp32, warm"]["load"]
    long = report["long_series"]
    assert long["slices"] == 3 and long["runtime"] == "openvino"
    assert long["peak_rss_mb"] >= long["rss_before_mb"] > 0
