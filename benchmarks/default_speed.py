"""Speed of the default backend (``litemedsam-box``, real LiteMedSAM weights) on this CPU.

Prints one JSON:

* ``encoder``: seconds per slice of the image encoder for each runtime tried (torch fp32 at
  batch 4, today's path; fp32 at batch 1; bf16 autocast at batch 1 where the CPU has native
  bf16), the median of ``--repeats`` runs, and each runtime's relative L2 error against fp32;
* ``segment``: seconds per slice of ``segment()`` on a ``--slices`` series, per stage
  (encode, retrieve, align, decode, merge, intensity, other), cold (no reference encoded yet)
  and warm (references encoded at approval), for today's batch size and the default one;
* ``peak_rss_mb`` of the process.

The target series is an ACDC ``val`` case repeated along z with a little noise per copy, so
every slice is new to the encoding cache. Not covered: DICOM read and SEG write (see
``benchmarks/e2e_latency.py``).

    .venv/bin/python benchmarks/default_speed.py --data ../shared/data/acdc --slices 30
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rafss_core.datasets.nnunet import NnUNetDataset
from rafss_core.segmentation import litemedsam as lms
from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.backends import litemedsam_box as box
from rafss_core.segmentation.pipeline import SegmentOptions, build_library, reference_slices
from rafss_core.segmentation.segmenter import BuildContext

TODAY_BATCH = 4


@contextmanager
def stage_timer() -> Iterator[dict[str, float]]:
    """Wall seconds spent in each stage function while the block runs (patched in place)."""
    spent: dict[str, float] = defaultdict(float)
    patches = [(lms, "encode", "encode"), (lms, "match_shift", "align"),
               (lms, "decode", "decode"), (box, "_merge", "merge"),
               (box, "relabel", "intensity"), (box, "intensity_models", "intensity")]
    originals = [(module, attr, getattr(module, attr)) for module, attr, _ in patches]

    def timed(fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start
        return wrapper

    for module, attr, stage in patches:
        setattr(module, attr, timed(getattr(module, attr), stage))
    try:
        yield spent
    finally:
        for module, attr, fn in originals:
            setattr(module, attr, fn)


def encoder_runtimes(net: Any, slices: np.ndarray, repeats: int) -> dict[str, Any]:
    frames = lms.to_frame(slices)

    def run(batch: int, bf16: bool) -> tuple[float, torch.Tensor]:
        times, out = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                out = torch.cat([net.image_encoder(frames[i:i + batch]).float()
                                 for i in range(0, len(frames), batch)])
            times.append((time.perf_counter() - start) / len(frames))
        assert out is not None
        return statistics.median(times), out

    reference_time, reference = run(TODAY_BATCH, False)
    rows = {f"torch fp32, batch {TODAY_BATCH} (today)": (reference_time, reference)}
    rows["torch fp32, batch 1"] = run(1, False)
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        rows["torch bf16 autocast, batch 1"] = run(1, True)
    return {name: {"seconds_per_slice": round(t, 3),
                   "relative_l2_error": float((out - reference).norm() / reference.norm())}
            for name, (t, out) in rows.items()}


def series(volume: Any, slices: int, seed: int) -> Any:
    """``volume`` repeated along z to ``slices`` slices, each copy with its own small noise."""
    rng = np.random.default_rng(seed)
    a = volume.array
    copies = -(-slices // a.shape[0])
    scale = 1e-3 * float(a.max() - a.min() or 1.0)
    stacked = np.concatenate([a + rng.normal(0, scale, a.shape).astype(a.dtype)
                              for _ in range(copies)])[:slices]
    return replace(volume, array=stacked)


def segment_run(segmenter: Any, library: Any, target: Any, labels: list[int], k: int
                ) -> dict[str, float]:
    with stage_timer() as spent:
        start = time.perf_counter()
        segmenter.segment(target, library, labels=labels, options=SegmentOptions(k=k))
        total = time.perf_counter() - start
    n = target.num_slices
    out = {stage: round(s / n, 3) for stage, s in sorted(spent.items())}
    out["other"] = round((total - sum(spent.values())) / n, 3)
    out["total"] = round(total / n, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--refs", type=int, default=3, help="reference patients (train split)")
    ap.add_argument("--slices", type=int, default=30)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    ds = NnUNetDataset.open(args.data)
    refs = []
    for case in ds.cases_of(ds.patients("train")[: args.refs]):
        volume, truth = ds.load(case)
        refs.extend(reference_slices(case.case_id, volume, truth))
    query = next(c for c in ds.cases_of(ds.patients("val")[:1]))
    volume, _ = ds.load(query)
    labels = list(ds.labels)

    report: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                              "reference_slices": len(refs), "target_slices": args.slices}
    with tempfile.TemporaryDirectory() as tmp:
        approval = build_segmenter("litemedsam-box", "litemedsam",
                                   BuildContext(Path(tmp) / "models", cache_dir=Path(tmp) / "a"))
        library = build_library(refs, approval)  # embeddings, as stored at approval
        report["encoder"] = encoder_runtimes(approval.net,  # type: ignore[attr-defined]
                                             box.normalise(series(volume, 8, 99), None),
                                             args.repeats)
        runs: dict[str, list[dict[str, float]]] = defaultdict(list)
        for repeat in range(args.repeats):
            for batch in sorted({TODAY_BATCH, 1, box.CPU_BATCH}, reverse=True):
                name = f"batch {batch}" + (" (today)" if batch == TODAY_BATCH else "") + (
                    " (default)" if batch == box.CPU_BATCH else "")
                cache = Path(tmp) / f"cold-{repeat}-{batch}"
                segmenter = build_segmenter("litemedsam-box", "litemedsam",
                                            BuildContext(Path(tmp) / "models", cache_dir=cache))
                segmenter.batch_size = batch  # type: ignore[attr-defined]
                target = series(volume, args.slices, seed=repeat * 10 + batch)
                runs[f"{name}, cold"].append(segment_run(segmenter, library, target, labels,
                                                         args.k))
                target = series(volume, args.slices, seed=1000 + repeat * 10 + batch)
                runs[f"{name}, warm"].append(segment_run(segmenter, library, target, labels,
                                                         args.k))
        report["segment_seconds_per_slice"] = {
            name: {stage: statistics.median(r[stage] for r in rows) for stage in rows[0]}
            for name, rows in runs.items()}
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
