"""Few-shot evaluation on an nnU-Net-style dataset: the Python twin of ``rafss eval``."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rafss_core.datasets.nnunet import NnUNetDataset
from rafss_core.segmentation import metrics
from rafss_core.segmentation.backends import build_segmenter, choose
from rafss_core.segmentation.pipeline import (
    SegmentOptions,
    build_library,
    label_transfer,
    reference_slices,
)
from rafss_core.segmentation.retrieval import ReferenceLibrary
from rafss_core.segmentation.segmenter import BuildContext, Segmenter
from rafss_core.segmentation.volume import Volume, normalise

log = logging.getLogger(__name__)
ATLASES = 3  # reference volumes the atlas baseline registers per query

Baseline = Literal["label-transfer", "atlas"]
BASELINES: tuple[str, ...] = ("label-transfer", "atlas")
RANDOM_WEIGHTS_NOTICE = (
    "RANDOM WEIGHTS (tiny-random): these scores exercise the pipeline; they say nothing about "
    "the method. Import real checkpoints with `rafss models import` for meaningful numbers."
)


@dataclass
class EvalConfig:
    data: Path
    refs: int = 2
    queries: int = 1
    k: int = 4
    backend: str | None = None  # None or "auto": chosen from models / what is imported
    models: str | None = None  # None: the backend's default
    context: BuildContext | None = None  # models folder, device, precision; None: settings
    query_split: str = "test"  # "val" while choosing settings, "test" for the table
    baseline: Baseline | None = None
    atlases: int = ATLASES  # reference volumes registered per query by the atlas baseline
    oracle_slices: bool = False  # also Dice over only the slices whose truth holds the label
    propagate: bool = False
    cache_dir: Path | None = None  # image-encoder outputs reused across runs
    progress: bool = True


@dataclass
class MethodScores:
    cases: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, labels: dict[int, str]) -> dict[str, Any]:
        per_label: dict[str, dict[str, float | int]] = {}
        for name in labels.values():
            dice = [c["per_label"][name]["dice"] for c in self.cases]
            hd = [c["per_label"][name]["hd95"] for c in self.cases]
            finite = [h for h in hd if not math.isnan(h)]
            per_label[name] = {
                "dice": float(np.mean(dice)),
                "dice_std": float(np.std(dice)),
                "hd95": float(np.mean(finite)) if finite else float("nan"),
                "hd95_undefined": len(hd) - len(finite),
            }
            oracle = [c["per_label"][name]["dice_oracle"] for c in self.cases
                      if "dice_oracle" in c["per_label"][name]]
            if oracle:  # cases whose ground truth never holds the label do not count
                held = [d for d in oracle if not math.isnan(d)]
                per_label[name]["dice_oracle"] = float(np.mean(held)) if held else float("nan")
        out: dict[str, Any] = {
            "per_label": per_label,
            "mean_dice": float(np.mean([v["dice"] for v in per_label.values()]))}
        if all("dice_oracle" in v for v in per_label.values()) and per_label:
            out["mean_dice_oracle"] = float(np.nanmean(
                [v["dice_oracle"] for v in per_label.values()]))
        return out


def _score_case(case_id: str, pred: np.ndarray, ref: np.ndarray, spacing_zyx: tuple,
                labels: dict[int, str], oracle_slices: bool = False) -> dict[str, Any]:
    scores = metrics.per_label(pred, ref, list(labels), spacing_zyx)
    if oracle_slices:
        for v, s in scores.items():
            s["dice_oracle"] = metrics.oracle_slice_dice(pred == v, ref == v)
    return {"case": case_id, "per_label": {labels[v]: s for v, s in scores.items()}}


def run_eval(cfg: EvalConfig, segmenter: Segmenter | None = None) -> dict[str, Any]:
    """Reference patients: first ``refs`` train patients; queries: first ``queries`` patients
    of ``query_split``. Dice and HD95 are per case, in 3D. Returns the JSON-ready report."""
    import time

    from tqdm import tqdm

    ds = NnUNetDataset.open(cfg.data)
    ref_patients = ds.patients("train")[: cfg.refs]
    query_patients = ds.patients(cfg.query_split)[: cfg.queries]
    if set(ref_patients) & set(query_patients):
        raise ValueError("reference and query patients overlap; fix splits.json")
    if segmenter is None:
        context = cfg.context or _settings_context()
        name, models = choose(cfg.backend, cfg.models, context.models_dir)
        segmenter = build_segmenter(name, models, replace(context, cache_dir=cfg.cache_dir))
        if cfg.cache_dir is not None and hasattr(segmenter, "cache_targets"):
            segmenter.cache_targets = True  # queries are re-run with other settings
    ids = segmenter.ids
    if ids.weights == "random":
        log.warning(RANDOM_WEIGHTS_NOTICE)

    refs = []
    for case in ds.cases_of(ref_patients):
        volume, labels = ds.load(case)
        if labels is None:
            raise ValueError(f"reference case {case.case_id} has no label file")
        refs.extend(reference_slices(case.case_id, volume, labels))
    library = build_library(refs, segmenter, progress=cfg.progress)

    ours, base = MethodScores(), MethodScores()
    options = SegmentOptions(k=cfg.k, propagate=cfg.propagate)
    query_cases = [c for c in ds.cases_of(query_patients) if c.label is not None]
    seconds = wall = slices = 0.0
    for case in tqdm(query_cases, desc="eval cases", unit="case", disable=not cfg.progress):
        volume, truth = ds.load(case)
        assert truth is not None
        spacing_zyx = tuple(reversed(volume.spacing))
        start, start_wall = time.process_time(), time.perf_counter()
        pred = segmenter.segment(volume, library, labels=list(ds.labels), options=options)
        seconds += time.process_time() - start
        wall += time.perf_counter() - start_wall
        slices += volume.num_slices
        ours.cases.append(_score_case(case.case_id, pred.array, truth, spacing_zyx, ds.labels,
                                      cfg.oracle_slices))
        ours.cases[-1]["mean_retrieval_similarity"] = float(np.mean(pred.slice_similarity))
        if cfg.baseline is not None:
            assert pred.embeddings is not None
            if cfg.baseline == "atlas":
                bl_array = multi_atlas(volume, library, pred.embeddings, list(ds.labels),
                                       cfg.k, cfg.atlases)
            else:
                bl_array = label_transfer(volume, library, pred.embeddings).array
            base.cases.append(_score_case(case.case_id, bl_array, truth, spacing_zyx,
                                          ds.labels, cfg.oracle_slices))

    report: dict[str, Any] = {
        "backend": ids.backend,
        "models": ids.models,
        "model_ids": list(ids.model_ids),
        "embedder_id": ids.embedder_id,
        "weights": ids.weights,
        "k": cfg.k,
        "propagate": cfg.propagate,
        "reference_patients": ref_patients,
        "query_split": cfg.query_split,
        "query_patients": query_patients,
        "reference_slices": len(refs),
        # CPU seconds (all threads) per target slice, encoder included unless it was cached
        "cpu_seconds_per_slice": seconds / max(slices, 1),
        "wall_seconds_per_slice": wall / max(slices, 1),
        "encoder_cached": cfg.cache_dir is not None,
        "oracle_slices": cfg.oracle_slices,
        **ours.summary(ds.labels),
        "cases": ours.cases,
    }
    if ids.weights == "random":
        report["notice"] = RANDOM_WEIGHTS_NOTICE
    if cfg.baseline:
        report["baseline"] = {"name": cfg.baseline, **base.summary(ds.labels),
                              "cases": base.cases}
        if cfg.baseline == "atlas":
            report["baseline"]["atlases"] = cfg.atlases
    return report


def multi_atlas(volume: Volume, library: ReferenceLibrary, embeddings: np.ndarray,
                values: list[int], k: int, atlases: int) -> np.ndarray:
    """The classical training-free baseline: the ``atlases`` reference volumes that retrieval
    votes for (the backend's own retrieval, top-k per slice) are registered onto the query
    (rotation search, affine, demons; physical spacing), their labels warped by nearest
    neighbour and fused by majority vote. Failed registrations do not vote."""
    from rafss_core.segmentation.registration import fuse, label_map_of, register

    found = library.index.search(embeddings, k)
    target = normalise(volume)
    spacing = tuple(reversed(volume.spacing))
    registered = []
    for stack in library.stacks_by_votes(found, atlases):
        ref = library.stack(stack)
        registered.append(register(target, np.stack([r.image for r in ref]),
                                   np.stack([r.labels for r in ref]), spacing,
                                   ref[0].spacing or spacing))
    if not any(r.ok for r in registered):
        log.warning("atlas baseline: no reference volume registered onto %s", volume.shape)
    return label_map_of(fuse(registered, values), values)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: undefined HD95 becomes null
    path.write_text(json.dumps(nan_to_none(report), indent=2))


def nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [nan_to_none(v) for v in x]
    return x


def _settings_context() -> BuildContext:
    """The settings' models folder, device and precision; no service caches (an evaluation
    writes nothing into the service's data directory)."""
    from rafss_core.config import Settings

    return Settings.load().build_context(memories_dir=None, cache_dir=None)
