"""One command for a lent GPU: the worker path's speed, bf16 agreement and memory, as one JSON.

For SAM 2.1 t, s, b+ and l (random weights at 1024 px: speed does not depend on weights) with
1 and 3 labels, on ``--slices`` synthetic target slices of 256 x 256, k=4, DINOv2-B retrieval
over 40 reference slices, it measures in one run:

* ``path_*``: slices/s of the whole worker path (``Sam2MemorySegmenter.segment``: embed,
  retrieve, decode, label map), reference memories warm (prepared at approval, as in
  production), in fp32 and in bf16 (the GPU default, ``RAFSS_PRECISION=auto``);
* ``decode_*``: slices/s of memory-conditioned decoding alone (image features precomputed);
* ``peer_*``: slices/s of the peers' route (stock ``SAM2VideoPredictor`` per slice, fp32) on
  ``--peer-slices`` slices, and the speedup of the fp32 and bf16 paths over it;
* ``bf16_pixels_differing``: label-map pixels where bf16 and fp32 disagree (the goal: < 0.1 %;
  random weights make labels near-ties, so this is an upper bound of what real weights give);
* ``peak_gpu_gb``: peak GPU memory per model; ``memory``: peak GPU memory and peak RSS of the
  whole path on one ``--memory-slices``-slice series with 3 labels.

Run on the GPU machine from the repository root (well under 5 minutes on an H200):

    python benchmarks/gpu_bench.py > gpu.json

A bare GPU image with torch and transformers lacks SAM 2 and its configuration packages; the
script says which are missing and exits 2. ``benchmarks/gpu_wheels.sh`` (run here) puts them in
``.whl/`` to carry. Smoke test on the CPU (``tests/unit/test_gpu_bench.py`` runs a smaller one):

    python benchmarks/gpu_bench.py --device cpu --models tiny --slices 3 --peer-slices 1 \
        --memory-slices 4

Memory alone, e.g. on the CPU: ``--device cpu --models tiny --slices 0 --memory-slices 300``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# import name -> what pip installs; what a bare image with torch and transformers lacks
NEEDED = {"sam2": "sam2==1.1.0", "hydra": "hydra-core", "omegaconf": "omegaconf",
          "iopath": "iopath", "portalocker": "portalocker", "transformers": "transformers",
          "safetensors": "safetensors", "tqdm": "tqdm", "torch": "torch", "psutil": "psutil"}
SAM_MODELS = ("t", "s", "b+", "l")
SIDE = 256  # target and reference slices are SIDE x SIDE


def missing_packages() -> list[str]:
    return [pip for name, pip in NEEDED.items() if importlib.util.find_spec(name) is None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default=",".join(SAM_MODELS),
                    help="SAM 2.1 sizes (t,s,b+,l), or 'tiny' (tiny-random, CPU smoke test)")
    ap.add_argument("--slices", type=int, default=96)
    ap.add_argument("--references", type=int, default=40)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--peer-slices", type=int, default=4)
    ap.add_argument("--memory-slices", type=int, default=300)
    args = ap.parse_args()
    missing = missing_packages()
    if missing:
        print(json.dumps({"error": "missing Python packages", "missing": missing,
                          "fix": "run benchmarks/gpu_wheels.sh where pip works, carry .whl, "
                                 "and pip install --no-index --no-deps .whl/*.whl"}))
        sys.exit(2)
    warnings.filterwarnings("ignore")
    print(json.dumps(run(args)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from segment_speed import synthetic  # benchmarks/ is on sys.path when run as a script

    from rafss_core.segmentation.devices import resolve_device

    torch.set_grad_enabled(False)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "torch": torch.__version__, "slices": args.slices, "k": args.k, "side": SIDE,
        "references": args.references, "weights": "random",
    }
    ref_images, ref_labels = synthetic(args.references, 3, seed=1, shape=(SIDE, SIDE))
    targets, _ = synthetic(max(args.slices, args.peer_slices), 3, seed=2, shape=(SIDE, SIDE))
    sizes = ["tiny"] if args.models == "tiny" else [m.strip() for m in args.models.split(",")]
    started = time.perf_counter()
    for size in sizes:
        model_started = time.perf_counter()
        if gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        bundle = _bundle(size, str(device))
        for n_labels in (1, 3) if args.slices else ():  # --slices 0: the memory case only
            out.update(_model_case(bundle, size, n_labels, ref_images, ref_labels, targets,
                                   args))
        if gpu:
            out[f"{size}_peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30,
                                               2)
        if size == sizes[0] and args.memory_slices:
            out["memory"] = _memory_case(bundle, size, ref_images, ref_labels, args, device)
        out[f"{size}_bench_seconds"] = round(time.perf_counter() - model_started, 1)
        del bundle
    out["bench_seconds"] = round(time.perf_counter() - started, 1)
    return out


def _bundle(size: str, device: str) -> Any:
    from rafss_core.segmentation.models import (
        DINOV2_ARCHS,
        DINOV2_COMMON,
        ModelBundle,
        build_sam2,
        load_models,
        with_official_interpolation,
    )

    if size == "tiny":
        return load_models("tiny-random", device=device)
    from transformers import Dinov2Config, Dinov2Model

    dino = with_official_interpolation(Dinov2Model(Dinov2Config(
        **{**DINOV2_COMMON, **DINOV2_ARCHS["dinov2-b"]}))).to(device).eval()
    sam = build_sam2(f"sam2.1-{size}", None, device)
    return ModelBundle(sam, dino, f"sam2.1-{size}:random", "dinov2-b:random", "pretrained",
                       f"sam2.1-{size},dinov2-b")  # "pretrained": 224 px DINOv2 input


def _segmenter(bundle: Any, precision: str, bank: Any) -> Any:
    from rafss_core.segmentation.backends.sam2_memory import Sam2MemorySegmenter
    from rafss_core.segmentation.memory import MemoryDecoder

    return Sam2MemorySegmenter(bundle, MemoryDecoder(bundle.sam, bundle.sam_id, bank,
                                                     precision=precision))  # type: ignore[arg-type]


def _timed(fn: Any, device: Any) -> tuple[Any, float]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - t0


def _model_case(bundle: Any, size: str, n_labels: int, ref_images: np.ndarray,
                ref_labels: np.ndarray, targets: np.ndarray, args: argparse.Namespace,
                ) -> dict[str, Any]:
    from rafss_core.segmentation.memory import MemoryBank
    from rafss_core.segmentation.peers import video_predictor_logits
    from rafss_core.segmentation.pipeline import SegmentOptions, build_library
    from rafss_core.segmentation.retrieval import ReferenceSlice
    from rafss_core.segmentation.volume import Volume

    labels = list(range(1, n_labels + 1))
    refs = [ReferenceSlice(f"r{i}", im, np.where(lab <= n_labels, lab, 0).astype(np.int16))
            for i, (im, lab) in enumerate(zip(ref_images, ref_labels, strict=True))]
    bank = MemoryBank()  # shared: memories are built once in fp32 whatever the precision
    fp32, bf16 = _segmenter(bundle, "fp32", bank), _segmenter(bundle, "bf16", bank)
    device = fp32.decoder.device
    library = build_library(refs, fp32)
    fp32.prepare(refs, labels)  # at approval time in production
    volume = Volume(targets[: args.slices], modality="OT")
    options = SegmentOptions(k=args.k)
    key = f"{size}_L{n_labels}"
    out: dict[str, Any] = {}
    maps = {}
    for name, seg in (("fp32", fp32), ("bf16", bf16)):
        seg.segment(Volume(targets[:2], modality="OT"), library, labels, options=options)
        result, seconds = _timed(lambda seg=seg: seg.segment(volume, library, labels,
                                                             options=options), device)
        maps[name] = result.array
        out[f"{key}_path_{name}_slices_per_s"] = round(args.slices / seconds, 2)
    differing = int((maps["fp32"] != maps["bf16"]).sum())
    out[f"{key}_bf16_pixels_differing"] = f"{differing}/{maps['fp32'].size}"
    out[f"{key}_bf16_fraction_differing"] = round(differing / maps["fp32"].size, 6)
    out[f"{key}_bf16_foreground_fraction_differing"] = round(
        float(((maps["fp32"] > 0) != (maps["bf16"] > 0)).mean()), 6)

    # decode alone: image features precomputed, every (slice, label) pair decoded in batches
    embeddings = fp32.embed(volume.array)
    keys = library.index.search(embeddings, args.k).keys
    for name, seg in (("fp32", fp32), ("bf16", bf16)):
        dec = seg.decoder
        feats = dec.image_features(volume.array)
        mems = {(r.key, v): m for v in labels for r, m in zip(
            refs, dec.label_memories(np.stack([r.image for r in refs]),
                                     np.stack([[r.labels == v for r in refs]]))[0],
            strict=True)}
        pairs = [(z, v) for z in range(args.slices) for v in labels]

        def decode_all(dec: Any = dec, feats: Any = feats, mems: dict = mems,
                       pairs: list = pairs) -> None:
            for b in range(0, len(pairs), dec.batch_size):
                chunk = pairs[b : b + dec.batch_size]
                dec.decode(feats, [z for z, _ in chunk],
                           [[mems[(k, v)] for k in keys[z]] for z, v in chunk])

        decode_all(pairs=pairs[: dec.batch_size])  # warm-up
        _, seconds = _timed(decode_all, device)
        out[f"{key}_decode_{name}_slices_per_s"] = round(args.slices / seconds, 2)
        del feats

    # the peers' route: SAM2VideoPredictor per slice, fp32, on a few slices
    index = {r.key: i for i, r in enumerate(refs)}
    peer_images = np.stack([r.image for r in refs])
    peer_labels = np.stack([r.labels for r in refs])

    def peer(n: int) -> None:
        for z in range(n):
            idx = [index[k] for k in keys[z % len(keys)]][::-1]
            video_predictor_logits(bundle.sam, peer_images[idx], peer_labels[idx],
                                   volume.array[z % len(volume.array)], labels)

    peer(1)  # warm-up
    _, seconds = _timed(lambda: peer(args.peer_slices), device)
    peer_rate = args.peer_slices / seconds
    out[f"{key}_peer_slices_per_s"] = round(peer_rate, 2)
    for name in ("fp32", "bf16"):
        out[f"{key}_speedup_{name}"] = round(out[f"{key}_path_{name}_slices_per_s"] / peer_rate,
                                             1)
    return out


class RssSampler:
    """Peak resident set size of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self) -> RssSampler:
        import threading

        import psutil

        self._process = psutil.Process()
        self.before = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _memory_case(bundle: Any, size: str, ref_images: np.ndarray, ref_labels: np.ndarray,
                 args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Peak memory of the whole path (default precision) on one long 3-label series."""
    import torch
    from segment_speed import synthetic

    from rafss_core.segmentation.devices import resolve_precision
    from rafss_core.segmentation.memory import MemoryBank
    from rafss_core.segmentation.pipeline import SegmentOptions, build_library
    from rafss_core.segmentation.retrieval import ReferenceSlice
    from rafss_core.segmentation.volume import Volume

    refs = [ReferenceSlice(f"r{i}", im, lab) for i, (im, lab) in
            enumerate(zip(ref_images, ref_labels, strict=True))]
    precision = resolve_precision("auto", device)
    seg = _segmenter(bundle, precision, MemoryBank())
    library = build_library(refs, seg)
    seg.prepare(refs, [1, 2, 3])
    series, _ = synthetic(args.memory_slices, 3, seed=3, shape=(SIDE, SIDE))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with RssSampler() as rss:
        _, seconds = _timed(lambda: seg.segment(Volume(series, modality="OT"), library,
                                                [1, 2, 3], options=SegmentOptions(k=args.k)),
                            device)
    report = {"model": size, "slices": args.memory_slices, "labels": 3,
              "precision": precision, "seconds": round(seconds, 2),
              "rss_before_gb": round(rss.before / 2**30, 3),
              "peak_rss_gb": round(rss.peak / 2**30, 3),
              "rss_growth_gb": round((rss.peak - rss.before) / 2**30, 3),
              "series_float32_gb": round(series.nbytes / 2**30, 3)}
    if device.type == "cuda":
        report["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return report


if __name__ == "__main__":
    main()
