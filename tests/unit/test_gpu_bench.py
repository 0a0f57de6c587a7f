"""``benchmarks/gpu_bench.py`` runs end to end (on the CPU, tiny-random) and prints one JSON
with every figure the GPU run reports, so the one prepared GPU run cannot fail on a typo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_smoke_prints_every_figure():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--device", "cpu",
         "--models", "tiny", "--slices", "2", "--references", "6", "--peer-slices", "1",
         "--memory-slices", "3"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    for labels in (1, 3):
        key = f"tiny_L{labels}"
        for name in ("path_fp32_slices_per_s", "path_bf16_slices_per_s",
                     "decode_fp32_slices_per_s", "decode_bf16_slices_per_s",
                     "peer_slices_per_s", "speedup_fp32", "speedup_bf16"):
            assert figures[f"{key}_{name}"] > 0, name
        differing, total = map(int, figures[f"{key}_bf16_pixels_differing"].split("/"))
        assert total == 2 * 256 * 256 and 0 <= differing <= total
    memory = figures["memory"]
    assert memory["slices"] == 3 and memory["labels"] == 3 and memory["precision"] == "fp32"
    assert memory["peak_rss_gb"] >= memory["rss_before_gb"] > 0
    growth = memory["peak_rss_gb"] - memory["rss_before_gb"]
    assert abs(memory["rss_growth_gb"] - growth) < 2e-3


def test_gpu_bench_names_missing_packages():
    """On an image without SAM 2 it says which packages to carry and exits 2."""
    code = ("import importlib.util, sys, runpy; real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, *a: None if n in ('sam2', 'hydra') "
            "else real(n, *a)\n"
            "sys.argv = ['gpu_bench.py']\n"
            f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_bench.py')!r}, run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 2
    report = json.loads(res.stdout)
    assert report["missing"] == ["sam2==1.1.0", "hydra-core"]
    assert "gpu_wheels.sh" in report["fix"]
