"""RAFSS's batched decode vs the peers' SAM2VideoPredictor route, on identical inputs.

CPU, ``tiny-random`` weights, 20 target slices, 3 labels, k=4 (defaults). Both routes get the
same retrieved references per target slice (retrieval is done once, outside the timings).

Prints seconds per slice for each route, their ratio and ``max_mask_diff``: the number of
pixels whose masks differ where the video-predictor logit has magnitude > 1e-4.

* ``speedup``: RAFSS with a cold memory bank (it encodes every retrieved reference first, as the
  peers do for every slice);
* ``speedup_warm_cache``: the worker path, whose reference memories were prepared when the
  references were approved (``Segmenter.prepare``), so only target slices are encoded.

On the CPU both are bounded by the SAM 2 image encoder (about 65 % of the warm path): the peers
encode k + 1 images per target slice, RAFSS one (warm) or one plus each retrieved reference
once (cold). GPU figures: ``benchmarks/gpu_bench.py``.

    python benchmarks/segment_speed.py [--slices 20] [--labels 3] [--k 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from rafss_core.segmentation.memory import MemoryDecoder
from rafss_core.segmentation.models import load_models
from rafss_core.segmentation.peers import video_predictor_logits
from rafss_core.segmentation.pipeline import SegmentOptions, build_library, segment
from rafss_core.segmentation.volume import Volume, logits_to_source

ACDC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "acdc"


def synthetic(n: int, labels: int, seed: int, shape: tuple[int, int] = (160, 144),
              ) -> tuple[np.ndarray, np.ndarray]:
    """Concentric discs with per-slice jitter, 160 x 144 px unless told."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    images, maps = [], []
    for _ in range(n):
        cy, cx = shape[0] // 2 + rng.integers(-8, 9), shape[1] // 2 + rng.integers(-8, 9)
        r = np.hypot(yy - cy, xx - cx)
        lab = np.zeros(shape, np.int16)
        for v in range(labels, 0, -1):
            lab[r < 12 * v + rng.integers(0, 4)] = v
        img = 0.15 + 0.2 * lab + 0.05 * rng.standard_normal(lab.shape)
        images.append(np.clip(img, 0, 1).astype(np.float32))
        maps.append(lab)
    return np.stack(images), np.stack(maps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--references", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    from tqdm import tqdm

    torch.set_grad_enabled(False)
    models = load_models("tiny-random")
    ref_images, ref_labels = synthetic(args.references, args.labels, seed=1)
    targets, _ = synthetic(args.slices, args.labels, seed=2)
    labels = list(range(1, args.labels + 1))

    from rafss_core.segmentation.retrieval import ReferenceSlice

    embedder = models.embedder()
    refs = [ReferenceSlice(f"r{i}", im, lab) for i, (im, lab) in
            enumerate(zip(ref_images, ref_labels, strict=True))]
    library = build_library(refs, embedder)
    neighbours = library.index.search(embedder.embed(targets), args.k)
    rank_index = [[int(key[1:]) for key in row] for row in neighbours.keys]

    # Peers' route: one slice at a time through SAM2VideoPredictor (frames: farthest..nearest).
    t0 = time.perf_counter()
    video = []
    for z in tqdm(range(args.slices), desc="SAM2VideoPredictor route", unit="slice"):
        idx = rank_index[z][::-1]
        video.append(video_predictor_logits(models.sam, ref_images[idx], ref_labels[idx],
                                             targets[z], labels))
    video_s = (time.perf_counter() - t0) / args.slices

    # RAFSS: batched over slices and labels, features reused, memories cached (cold cache).
    volume = Volume(targets, modality="OT")
    decoder = MemoryDecoder(models.sam, models.sam_id, batch_size=12)
    t0 = time.perf_counter()
    result = _rafss_logits(decoder, targets, rank_index, ref_images, ref_labels, labels)
    rafss_s = (time.perf_counter() - t0) / args.slices
    # warm cache: the same references again (what a worker sees after the first study)
    t0 = time.perf_counter()
    _rafss_logits(decoder, targets, rank_index, ref_images, ref_labels, labels)
    rafss_warm_s = (time.perf_counter() - t0) / args.slices

    video_all = np.stack(video)  # (Z, L, H, W)
    decided = np.abs(video_all) > 1e-4
    max_mask_diff = int(((result > 0) != (video_all > 0))[decided].sum())
    max_logit_diff = float(np.abs(result - video_all).max())

    # whole pipeline (embed + retrieve + decode + label map), for context
    t0 = time.perf_counter()
    segment(volume, library, models, options=SegmentOptions(k=args.k), decoder=decoder,
            embedder=embedder, labels=labels)
    pipeline_s = (time.perf_counter() - t0) / args.slices

    figures = {
        "device": "cpu", "models": "tiny-random", "image_size": models.sam_image_size,
        "slices": args.slices, "labels": args.labels, "k": args.k,
        "torch_threads": torch.get_num_threads(),
        "video_predictor_s_per_slice": round(video_s, 4),
        "rafss_s_per_slice": round(rafss_s, 4),
        "rafss_warm_cache_s_per_slice": round(rafss_warm_s, 4),
        "rafss_pipeline_s_per_slice": round(pipeline_s, 4),
        "speedup": round(video_s / rafss_s, 2),
        "speedup_warm_cache": round(video_s / rafss_warm_s, 2),
        "max_mask_diff": max_mask_diff,
        "max_logit_diff": max_logit_diff,
    }
    for key, value in figures.items():
        print(f"{key:32s} {value}")
    if args.json:
        print(json.dumps(figures))


def _rafss_logits(decoder: MemoryDecoder, targets: np.ndarray, rank_index: list[list[int]],
                  ref_images: np.ndarray, ref_labels: np.ndarray, labels: list[int]) -> np.ndarray:
    used = sorted({i for row in rank_index for i in row})
    masks = np.stack([ref_labels[used] == lab for lab in labels])
    mems = {lab: dict(zip(used, per_ref, strict=True))
            for lab, per_ref in zip(labels, decoder.label_memories(ref_images[used], masks),
                                    strict=True)}
    feats = decoder.image_features(targets)
    pairs = [(z, lab) for z in range(len(targets)) for lab in labels]
    out = np.zeros((len(targets), len(labels), *targets.shape[1:]), np.float32)
    for b in range(0, len(pairs), decoder.batch_size):
        chunk = pairs[b : b + decoder.batch_size]
        res = decoder.decode(feats, [z for z, _ in chunk],
                             [[mems[lab][i] for i in rank_index[z]] for z, lab in chunk])
        logits = logits_to_source(res.low_res_logits, targets.shape[1:])[:, 0].numpy()
        for (z, lab), lg in zip(chunk, logits, strict=True):
            out[z, labels.index(lab)] = lg
    return out


if __name__ == "__main__":
    main()
