"""Speed of the default backend (``litemedsam-box``, real LiteMedSAM weights) on this CPU.

The worker's whole path for one series, timed per stage: ``read`` (DICOM files -> volume),
``encode``, ``retrieve``, ``align``, ``decode``, ``merge``, ``intensity``, ``other`` (prompt
logic) and ``seg_write`` (the DICOM-SEG, built and serialised), in seconds per slice, the
median of ``--repeats`` runs, for each runtime:

* ``torch fp32``: the reference path (the runtime before OpenVINO);
* ``openvino fp32`` and ``openvino bf16`` (the default is ``auto``: see
  ``rafss_core/segmentation/runtimes.py``);
* ``torch bf16`` (autocast), where the CPU has native bf16.

``warm``: the worker has its models loaded and the references were encoded at approval, as
in the service. ``cold``: the first job after an approval in a new worker process: the models
are loaded (and compiled) inside the timed run. ``--long`` slices (300 by default) are run once
with the default runtime for seconds per slice and peak RSS, sampled during the run.

The series is an ACDC ``val`` case repeated along z with a little noise per copy, so every
slice is new; it is written as DICOM files first.

    .venv/bin/python benchmarks/default_speed.py --data ../shared/data/acdc
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rafss_core.datasets.nnunet import NnUNetDataset  # noqa: E402
from rafss_core.dicom.labels import task_segments  # noqa: E402
from rafss_core.dicom.seg import AlgorithmInfo, write_seg  # noqa: E402
from rafss_core.dicom.series import load_series  # noqa: E402
from rafss_core.segmentation import litemedsam as lms  # noqa: E402
from rafss_core.segmentation import retrieval  # noqa: E402
from rafss_core.segmentation.backends import build_segmenter  # noqa: E402
from rafss_core.segmentation.backends import litemedsam_box as box  # noqa: E402
from rafss_core.segmentation.pipeline import (  # noqa: E402
    SegmentOptions,
    build_library,
    reference_slices,
)
from rafss_core.segmentation.segmenter import BuildContext  # noqa: E402
from tests.factories import volume_to_mr_series  # noqa: E402

RUNTIMES = {"torch fp32 (reference)": ("torch", "fp32"), "openvino fp32": ("openvino", "fp32"),
            "openvino bf16": ("openvino", "bf16"), "torch bf16": ("torch", "bf16")}


@contextmanager
def stage_timer() -> Iterator[dict[str, float]]:
    """Wall seconds spent in each stage function while the block runs (patched in place)."""
    spent: dict[str, float] = defaultdict(float)
    patches = [(lms, "encode", "encode"), (lms, "match_shift", "align"),
               (lms, "match_spectrum", "align"), (lms, "match_grid", "align"),
               (lms, "match_template", "align"),
               (lms, "decode", "decode"), (box, "_merge", "merge"),
               (box, "relabel", "intensity"), (box, "intensity_models", "intensity"),
               (retrieval.ExactIndex, "search", "retrieve")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]

    def timed(fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start
        return wrapper

    for owner, attr, stage in patches:
        setattr(owner, attr, timed(getattr(owner, attr), stage))
    try:
        yield spent
    finally:
        for owner, attr, fn in originals:
            setattr(owner, attr, fn)


class PeakRss:
    """Peak resident memory of this process, sampled every 20 ms while the block runs."""

    def __enter__(self) -> PeakRss:
        self.peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def series_files(volume: Any, slices: int, seed: int, folder: Path) -> list[Path]:
    """``volume`` repeated along z to ``slices`` slices (each copy with its own small noise),
    written as an MR series."""
    rng = np.random.default_rng(seed)
    a = volume.array
    copies = -(-slices // a.shape[0])
    scale = 1e-3 * float(a.max() - a.min() or 1.0)
    stacked = np.concatenate([np.clip(a + rng.normal(0, scale, a.shape), 0, None).astype(a.dtype)
                              for _ in range(copies)])[:slices]
    return volume_to_mr_series(replace(volume, array=stacked), folder, seed=f"bench-{seed}")


LABELS = [SimpleNamespace(number=v, name=n, category_scheme="SCT", category_value="123037004",
                          category_meaning="Anatomical Structure", type_scheme="SCT",
                          type_value="123037004", type_meaning="Anatomical Structure",
                          colour_rgb="#ff0000") for v, n in ((1, "RV"), (2, "MYO"), (3, "LV"))]


def job(build: Callable[[], Any], library: Any, files: list[Path], k: int) -> dict[str, float]:
    """One worker job, timed per stage; ``build`` (the models) is timed as ``load``."""
    n = len(files)
    with stage_timer() as spent:
        start = time.perf_counter()
        segmenter = build()
        spent["load"] = time.perf_counter() - start
        t = time.perf_counter()
        loaded = load_series(files)
        spent["read"] = time.perf_counter() - t
        t = time.perf_counter()
        result = segmenter.segment(loaded.volume, library, labels=[1, 2, 3],
                                   options=SegmentOptions(k=k))
        in_segment = time.perf_counter() - t
        t = time.perf_counter()
        seg = write_seg(result.array, loaded, task_segments(LABELS),  # type: ignore[arg-type]
                        AlgorithmInfo(model_ids=list(segmenter.ids.model_ids),
                                      reference_set_version="1"), "bench")
        seg.save_as(io.BytesIO(), enforce_file_format=True)
        spent["seg_write"] = time.perf_counter() - t
        total = time.perf_counter() - start
    stages = {"load", "read", "seg_write"}
    spent["other"] = in_segment - sum(s for name, s in spent.items() if name not in stages)
    out = {stage: round(s / n, 4) for stage, s in sorted(spent.items())}
    out["total"] = round(total / n, 4)
    out["total_without_load"] = round((total - spent["load"]) / n, 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--refs", type=int, default=3, help="reference patients (train split)")
    ap.add_argument("--slices", type=int, default=30)
    ap.add_argument("--long", type=int, default=300, help="slices of the long series (0: skip)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runtimes", default=",".join(RUNTIMES),
                    help="comma-separated, from: " + ", ".join(RUNTIMES))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from tqdm import tqdm

    ds = NnUNetDataset.open(args.data)
    refs = []
    for case in ds.cases_of(ds.patients("train")[: args.refs]):
        volume, truth = ds.load(case)
        refs.extend(reference_slices(case.case_id, volume, truth))
    volume, _ = ds.load(next(iter(ds.cases_of(ds.patients("val")[:1]))))
    names = [n.strip() for n in args.runtimes.split(",")]
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        names = [n for n in names if "bf16" not in n]
    report: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                              "cpu_count": psutil.cpu_count(), "reference_slices": len(refs),
                              "slices": args.slices, "k": args.k, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs: dict[str, list[dict[str, float]]] = defaultdict(list)
        bar = tqdm(total=len(names) * args.repeats * 2 + bool(args.long), desc="jobs")
        for name in names:
            runtime, precision = RUNTIMES[name]
            ctx = BuildContext(tmp / "models", precision=precision, runtime=runtime,
                               cache_dir=tmp / f"encodings-{runtime}-{precision}",
                               compiled_dir=tmp / "compiled")

            def build(ctx: BuildContext = ctx) -> Any:
                return build_segmenter("litemedsam-box", "litemedsam", ctx)

            approval = build()  # approval: embeds and encodes the references once
            library = build_library(refs, approval)
            approval.prepare(refs, [1, 2, 3])
            for repeat in range(args.repeats):
                files = series_files(volume, args.slices, 10 * repeat, tmp / f"{name}-c{repeat}")
                runs[f"{name}, cold"].append(job(build, library, files, args.k))
                bar.update()
                files = series_files(volume, args.slices, 10 * repeat + 1,
                                     tmp / f"{name}-w{repeat}")
                runs[f"{name}, warm"].append(job(lambda s=approval: s, library, files, args.k))
                bar.update()
        report["seconds_per_slice"] = {
            name: {stage: statistics.median(r[stage] for r in rows) for stage in rows[0]}
            for name, rows in runs.items()}
        if args.long:
            ctx = BuildContext(tmp / "models", cache_dir=tmp / "encodings-long",
                               compiled_dir=tmp / "compiled")
            segmenter = build_segmenter("litemedsam-box", "litemedsam", ctx)
            library = build_library(refs, segmenter)
            segmenter.prepare(refs, [1, 2, 3])
            files = series_files(volume, args.long, 999, tmp / "long")
            with PeakRss() as rss:
                before = psutil.Process().memory_info().rss
                figures = job(lambda: segmenter, library, files, args.k)
            bar.update()
            report["long_series"] = {"slices": args.long, "runtime": segmenter.net.name,
                                     "seconds_per_slice": figures,
                                     "rss_before_mb": round(before / 2**20),
                                     "peak_rss_mb": round(rss.peak / 2**20)}
        bar.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
