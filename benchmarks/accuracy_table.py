"""The README's accuracy table: ACDC, 10 reference patients from `train`, all 20 `test` patients.

Each row is one `rafss eval` run (the equivalent command is printed with it); the settings were
chosen on `val` only (benchmarks/litemedsam_prompts.py). LiteMedSAM encodings are cached in
``--cache-dir``, so the per-slice times of the litemedsam rows exclude the encoder; the encoder's
own time per slice is measured once, uncached, and printed.

    .venv/bin/python benchmarks/accuracy_table.py --data ../shared/data/acdc \
        --cache-dir /tmp/rafss-cache --json out/accuracy.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from rafss_core.evaluate import EvalConfig, nan_to_none, run_eval
from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.segmenter import BuildContext

ROWS = [  # (row, backend, models, refs, k, baseline)
    ("1+2", "litemedsam-box", "litemedsam", 10, 4, True),
    ("3", "litemedsam-box", "litemedsam", 10, 1, False),
    ("3", "litemedsam-box", "litemedsam", 10, 2, False),
    ("3", "litemedsam-box", "litemedsam", 10, 8, False),
    ("4", "litemedsam-box", "litemedsam", 1, 4, False),
    ("4", "litemedsam-box", "litemedsam", 3, 4, False),
    ("5", "sam2-memory", "tiny-random", 10, 4, False),
]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def encoder_seconds_per_slice(data: Path) -> float:
    from rafss_core.datasets.nnunet import NnUNetDataset
    from rafss_core.segmentation import litemedsam as lms
    from rafss_core.segmentation.volume import normalise

    ds = NnUNetDataset.open(data)
    volume, _ = ds.load(ds.cases_of(ds.patients("test")[:1])[0])
    net, _ = lms.build_litemedsam()
    slices = normalise(volume)[:4]
    start = time.perf_counter()
    lms.encode(net, slices)
    return (time.perf_counter() - start) / len(slices)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--rows", nargs="*", help="only these row indexes (0-based)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    segmenters = {}
    results = []
    lines = ["| row | method | refs | k | RV Dice | MYO Dice | LV Dice | mean Dice | "
             "RV HD95 | MYO HD95 | LV HD95 | s/slice (wall) |", "|" + "---|" * 12]
    for i, (row, backend, models, refs, k, baseline) in enumerate(ROWS):
        if args.rows and str(i) not in args.rows:
            continue
        if (backend, models) not in segmenters:
            segmenters[(backend, models)] = build_segmenter(
                backend, models, BuildContext(Path("/nonexistent"), cache_dir=args.cache_dir))
            if hasattr(segmenters[(backend, models)], "remember_matches"):  # same results
                segmenters[(backend, models)].remember_matches = True  # type: ignore[attr-defined]
                segmenters[(backend, models)].cache_targets = True  # type: ignore[attr-defined]
        cfg = EvalConfig(data=args.data, refs=refs, queries=args.queries, k=k, backend=backend,
                         models=models, cache_dir=args.cache_dir,
                         baseline="label-transfer" if baseline else None, progress=False)
        command = (f"rafss eval --data {args.data} --refs {refs} --queries {args.queries} "
                   f"--k {k} --backend {backend} --models {models}"
                   + (" --baseline label-transfer" if baseline else "")
                   + (f" --cache-dir {args.cache_dir}" if backend == "litemedsam-box" else ""))
        report = run_eval(cfg, segmenters[(backend, models)])
        report["command"] = command
        results.append(report)
        reps = [(f"{backend} ({models})", report)]
        if baseline:
            reps.append(("label transfer, same retrieval", report["baseline"]))
        for name, rep in reps:
            pl = rep["per_label"]
            secs = report["wall_seconds_per_slice"] if rep is report else float("nan")
            lines.append(
                f"| {row} | {name}{' (RANDOM)' if report['weights'] == 'random' else ''} | "
                f"{refs} | {k} | " + " | ".join(_fmt(pl[n]["dice"]) for n in ("RV", "MYO", "LV"))
                + f" | **{_fmt(rep['mean_dice'])}** | "
                + " | ".join(_fmt(pl[n]["hd95"]) for n in ("RV", "MYO", "LV"))
                + f" | {_fmt(secs)} |")
        print(lines[-1], flush=True)
        print(f"    {command}", flush=True)
    print("\n".join(lines))
    enc = encoder_seconds_per_slice(args.data)
    print(f"LiteMedSAM encoder, uncached: {enc:.2f} s per slice (wall)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(nan_to_none(
            {"rows": results, "table": lines, "encoder_seconds_per_slice": enc}), indent=1))


if __name__ == "__main__":
    main()
