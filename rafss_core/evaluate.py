"""Few-shot evaluation on an nnU-Net-style dataset: the Python twin of ``rafss eval``."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rafss_core.datasets.nnunet import NnUNetDataset
from rafss_core.segmentation import metrics
from rafss_core.segmentation.models import ModelBundle, load_models
from rafss_core.segmentation.pipeline import (
    SegmentOptions,
    build_library,
    label_transfer,
    reference_slices,
    segment,
)

log = logging.getLogger(__name__)

Baseline = Literal["label-transfer"]
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
    models: str = "tiny-random"
    baseline: Baseline | None = None
    propagate: bool = False
    pooling: str = "cls"
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
        mean_dice = float(np.mean([v["dice"] for v in per_label.values()]))
        return {"per_label": per_label, "mean_dice": mean_dice}


def _score_case(case_id: str, pred: np.ndarray, ref: np.ndarray, spacing_zyx: tuple,
                labels: dict[int, str]) -> dict[str, Any]:
    scores = metrics.per_label(pred, ref, list(labels), spacing_zyx)
    return {"case": case_id, "per_label": {labels[v]: s for v, s in scores.items()}}


def run_eval(cfg: EvalConfig, models: ModelBundle | None = None) -> dict[str, Any]:
    """Reference patients: first ``refs`` train patients; queries: first ``queries`` test
    patients. Dice and HD95 are per case, in 3D. Returns the JSON-ready report."""
    from tqdm import tqdm

    ds = NnUNetDataset.open(cfg.data)
    ref_patients = ds.patients("train")[: cfg.refs]
    query_patients = ds.patients("test")[: cfg.queries]
    if set(ref_patients) & set(query_patients):
        raise ValueError("reference and query patients overlap; fix splits.json")
    models = models or load_models(cfg.models)
    if models.weights == "random":
        log.warning(RANDOM_WEIGHTS_NOTICE)
    embedder = models.embedder(cfg.pooling)

    refs = []
    for case in ds.cases_of(ref_patients):
        volume, labels = ds.load(case)
        if labels is None:
            raise ValueError(f"reference case {case.case_id} has no label file")
        refs.extend(reference_slices(case.case_id, volume, labels))
    library = build_library(refs, embedder, progress=cfg.progress)

    ours, base = MethodScores(), MethodScores()
    options = SegmentOptions(k=cfg.k, propagate=cfg.propagate)
    query_cases = [c for c in ds.cases_of(query_patients) if c.label is not None]
    for case in tqdm(query_cases, desc="eval cases", unit="case", disable=not cfg.progress):
        volume, truth = ds.load(case)
        assert truth is not None
        spacing_zyx = tuple(reversed(volume.spacing))
        pred = segment(volume, library, models, labels=list(ds.labels), options=options,
                       embedder=embedder)
        ours.cases.append(_score_case(case.case_id, pred.array, truth, spacing_zyx, ds.labels))
        ours.cases[-1]["mean_retrieval_similarity"] = float(np.mean(pred.slice_similarity))
        if cfg.baseline == "label-transfer":
            bl = label_transfer(volume, library, models, embedder=embedder)
            base.cases.append(_score_case(case.case_id, bl.array, truth, spacing_zyx, ds.labels))

    report: dict[str, Any] = {
        "models": models.spec,
        "sam_id": models.sam_id,
        "dino_id": models.dino_id,
        "weights": models.weights,
        "k": cfg.k,
        "propagate": cfg.propagate,
        "pooling": cfg.pooling,
        "reference_patients": ref_patients,
        "query_patients": query_patients,
        "reference_slices": len(refs),
        **ours.summary(ds.labels),
        "cases": ours.cases,
    }
    if models.weights == "random":
        report["notice"] = RANDOM_WEIGHTS_NOTICE
    if cfg.baseline:
        report["baseline"] = {"name": cfg.baseline, **base.summary(ds.labels),
                              "cases": base.cases}
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: undefined HD95 becomes null
    path.write_text(json.dumps(_nan_to_none(report), indent=2))


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x
