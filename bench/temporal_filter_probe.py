"""Probe: does an untrained temporal filter on a model's stitched output change Dice and stability?

Run: ``.venv/bin/python bench/temporal_filter_probe.py --model NAME=CKPT [--model ...] --data DIR
--split all --out DIR [--filters 1 3 5] [--gates 0 0.8]``.

Each clip is predicted once, as ``ultramn evaluate --temporal-filter 1`` does it (windows of
the contract's T frames every T/2, stitched with the default triangular weights, resized to
the clip's resolution). The stitched nerve probabilities ``float32 [N,H,W]`` are then averaged
over a centred window of K frames (:func:`ultramn.windowing.temporal_mean_filter`, edge frames
repeated; K = 1 is the unfiltered output), leaving out neighbours whose map's cosine similarity
with the frame's is below each ``--gates`` value G (0, the default: every neighbour, the plain
mean), and thresholded at 0.5 as before. The product
filters before resizing and this probe after; both steps are linear, so the two agree up to
float rounding. Every variant is scored by the evaluation's own code and
written as an evaluation folder ``OUT/NAME-kK`` (``OUT/NAME-kK-gG`` for a gate G > 0;
``metrics.json``, ``clips.csv``, report), so
``ultramn compare`` pairs the variants clip by clip. The K = 1 folder reproduces
``ultramn evaluate --temporal-filter 1`` on the same data (a check that nothing else changed).

A frame-wise model (reference b) plus such a filter is a model that uses neighbouring frames
without learning how. If the filter makes a frame-wise model's CSA track closer to the truth,
the data holds temporal signal that a spatio-temporal network could use; if it does not, frame
by frame is already as good as averaging neighbours gets. Not part of the tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.checkpoints import named_checkpoint
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.evaluate.predict import ClipPrediction, predict_clip
from ultramn.evaluate.report import write_report
from ultramn.evaluate.runner import SPLIT_CHOICES, EvaluationData, overlay_example, score_clip, select_records, summarize
from ultramn.jsonio import write_json
from ultramn.model.checkpoint import load_checkpoint
from ultramn.windowing import check_min_similarity, check_temporal_filter, temporal_mean_filter


def probe_model(
    name: str,
    checkpoint: Path,
    data: Path,
    split: str,
    out: Path,
    filters: Sequence[int],
    gates: Sequence[float] = (0.0,),
    *,
    n_boot: int = 1000,
    keep_examples: int = 60,
    max_clips: int | None = None,
) -> None:
    """Predict every clip once with ``checkpoint``, score each filter length and gate, write ``OUT/NAME-kK[-gG]``."""
    model, meta = load_checkpoint(checkpoint, map_location="cpu")
    records = select_records(read_manifest(data), split)[:max_clips]
    if not records:
        raise SystemExit(f"{data}: no clips in split {split!r}")
    variants = [(k, g) for k in filters for g in (gates if k > 1 else (0.0,))]
    results = {v: EvaluationData() for v in variants}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for rec in tqdm(records, desc=name, unit="clip"):
            clip = read_clip(data / rec.file)
            pred = predict_clip(model, clip.frames, temporal_filter=1)
            for (k, g), res in results.items():
                variant = ClipPrediction(mask_probs=temporal_mean_filter(pred.mask_probs, k, g), plane_probs=pred.plane_probs)
                rows, clip_row = score_clip(rec, clip.masks, variant)
                res.frames.extend(rows)
                res.clips.append(clip_row)
                if len(res.examples) < keep_examples:
                    res.examples[rec.clip_id] = overlay_example(clip.frames, clip.masks, variant)
    seconds = time.perf_counter() - t0
    for (k, g), res in results.items():
        folder = out / (f"{name}-k{k}" + (f"-g{g:g}" if g > 0 else ""))
        metrics = {
            "checkpoint": str(checkpoint),
            "arch": meta.arch,
            "temporal_filter": k,
            "temporal_min_similarity": g,
            "data": str(data),
            "split": split,
            **summarize(res, n_boot=n_boot),
        }
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "metrics.json", metrics)
        write_report(folder, metrics, res)
        print(f"{folder}: dice_mean={metrics['dice_mean']:.4f}  n_clips={metrics['n_clips']}")
    print(f"{name}: {len(records)} clips predicted once and scored {len(results)} ways in {seconds / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=named_checkpoint, action="append", required=True, help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", choices=SPLIT_CHOICES, default="test")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--filters", type=int, nargs="+", default=[1, 3, 5], help="odd filter lengths in frames (1 = unfiltered)")
    ap.add_argument("--gates", type=float, nargs="+", default=[0.0], help="motion gates: min cosine similarity (0 = plain mean)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--keep-examples", type=int, default=60, help="clips kept per variant for the overlay figure")
    ap.add_argument("--max-clips", type=int, default=None, help="only the first N clips (a quick check)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for k in args.filters:
        try:
            check_temporal_filter(k)
        except ValueError as exc:
            ap.error(f"--filters: {exc}")
    for g in args.gates:
        try:
            check_min_similarity(g)
        except ValueError as exc:
            ap.error(f"--gates: {exc}")
    if not args.data.is_dir():
        ap.error(f"--data: no such folder: {args.data}")
    torch.set_num_threads(args.threads)
    for name, ckpt in args.model:
        probe_model(
            name,
            ckpt,
            args.data,
            args.split,
            args.out,
            args.filters,
            args.gates,
            n_boot=args.n_boot,
            keep_examples=args.keep_examples,
            max_clips=args.max_clips,
        )


if __name__ == "__main__":
    main()
