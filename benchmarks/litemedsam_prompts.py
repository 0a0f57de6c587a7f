"""Choose the ``litemedsam-box`` prompt rule on ACDC's ``val`` patients (never on ``test``).

Prints mean Dice per label for each candidate rule against label transfer with the same
retrieval. Encodings are cached (``--cache-dir``), so every rule after the first costs only
the prompt encoder and mask decoder.

    .venv/bin/python benchmarks/litemedsam_prompts.py --data ../shared/data/acdc \
        --refs 10 --queries 10 --cache-dir /tmp/rafss-cache --json out/prompts.json
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

from rafss_core.evaluate import EvalConfig, run_eval
from rafss_core.segmentation.backends import build_segmenter
from rafss_core.segmentation.prompts import PromptRule
from rafss_core.segmentation.segmenter import BuildContext

DEFAULT = PromptRule()
BASE = replace(DEFAULT, intensity=0.0, margin=0.05)  # the rules before the intensity model
CANDIDATES: dict[str, PromptRule] = {
    "prototype: top-1 box, 5 px margin": replace(BASE, box_from="top1", margin=5 / 256,
                                                 nesting=False, align=False, rerank=0,
                                                 dense_prior=False),
    "median box, majority vote": replace(BASE, nesting=False, align=False, rerank=0,
                                         dense_prior=False),
    "+ aligned references": replace(BASE, nesting=False, rerank=0, dense_prior=False),
    "+ aligned + nesting, ring = outline minus cavity": replace(BASE, ring="outline", rerank=0,
                                                                dense_prior=False),
    "+ aligned + nesting, ring = cavity grown by thickness": replace(BASE, rerank=0,
                                                                     dense_prior=False),
    "+ aligned + nesting (thickness) + rerank 16": replace(BASE, dense_prior=False),
    "+ dense prior": BASE,
    "+ intensity model, weight 0.5": replace(BASE, intensity=0.5),
    "+ intensity model, weight 0.75": replace(DEFAULT, margin=0.05),
    "+ intensity model, weight 1": replace(BASE, intensity=1.0),
    "+ intensity model, weight 2": replace(BASE, intensity=2.0),
    "default + refine": replace(BASE, refine=True),
    "default, margin 0.02": replace(BASE, margin=0.02),
    "default, margin 0.08": replace(BASE, margin=0.08),
    "default, presence 0.25": replace(BASE, presence=0.25),
    "default, presence 0.75": replace(BASE, presence=0.75),
    "default, top-1 box": replace(BASE, box_from="top1"),
    "margin 0": replace(DEFAULT, margin=0.0),
    "margin 0.01": replace(DEFAULT, margin=0.01),
    "margin 0.02 (default)": DEFAULT,
    "margin 0.03": replace(DEFAULT, margin=0.03),
    "margin 0.05": replace(DEFAULT, margin=0.05),
}
GRIDS = {"retrieval: global mean (256 d)": 1, "retrieval: 4 x 4 pooling (4096 d)": 4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--refs", type=int, default=10)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="candidate names to run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    segmenter = build_segmenter("litemedsam-box", "litemedsam",
                                BuildContext(Path("/nonexistent"), cache_dir=args.cache_dir))
    segmenter.cache_targets = True  # type: ignore[attr-defined]  # every rule re-runs them
    rows: list[dict] = []
    for name, rule in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        segmenter.rule = rule  # type: ignore[attr-defined]
        cfg = EvalConfig(data=args.data, refs=args.refs, queries=args.queries, k=args.k,
                         query_split="val", cache_dir=args.cache_dir,
                         baseline=None if rows else "label-transfer", progress=False)
        report = run_eval(cfg, segmenter)
        results = [(name, report, asdict(rule))]
        if "baseline" in report:
            results.insert(0, ("label transfer (same retrieval)", report["baseline"], {}))
        for label, rep, params in results:
            row = {"rule": label, **params, "mean_dice": rep["mean_dice"],
                   **{f"dice_{k}": v["dice"] for k, v in rep["per_label"].items()}}
            rows.append(row)
            print(f"{label:55s} mean {row['mean_dice']:.3f}  " + "  ".join(
                f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("dice_")),
                flush=True)
    for name, grid in GRIDS.items():
        if args.only and name not in args.only:
            continue
        segmenter.rule, segmenter.pool_grid = BASE, grid  # type: ignore[attr-defined]
        cfg = EvalConfig(data=args.data, refs=args.refs, queries=args.queries, k=args.k,
                         query_split="val", cache_dir=args.cache_dir, baseline="label-transfer",
                         progress=False)
        report = run_eval(cfg, segmenter)
        for label, rep in ((name, report), (f"  label transfer, {name}", report["baseline"])):
            row = {"rule": label, "mean_dice": rep["mean_dice"],
                   **{f"dice_{k}": v["dice"] for k, v in rep["per_label"].items()}}
            rows.append(row)
            print(f"{label:50s} mean {row['mean_dice']:.3f}  " + "  ".join(
                f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("dice_")), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
