"""Does a frame's mask depend on where it sits in the window? Dice by window position.

Run: ``.venv/bin/python bench/window_position_dice.py --model NAME=CKPT [--model ...] --data DIR
[--split test] [--clips N]``.

A 3D network's temporal convolutions zero-pad at the window's ends, so a frame at position 0
or ``T-1`` sees less context (and padding) than a frame in the middle; a frame-wise network
gives the same mask at every position. For each clip of the split (``--clips`` of them, evenly
chosen; all by default), every window of ``T`` consecutive frames (stride 1) is predicted at
the model's resolution (``H x W`` of the contract, nearest-neighbour masks), and each frame's
Dice (mask probability > 0.5 against the resized truth; 1 when both are empty) is filed under
its position in the window. The same windows at the product's stride (``T // 2``), stitched
with the product's triangular weights and no temporal filter, give the Dice the stitched
output has at that resolution. Prints one markdown row per model: the mean per-frame Dice at
each position, and of the stitched output (mean over frames, and over clips of their frame
mean). Slow: ``T // 2`` times the windows of an evaluation, in torch on 1 thread (about 10
minutes per model for the 120 test clips on the 2-core VM). Not part of the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.checkpoints import named_checkpoint
from ultramn.contract import CONTRACT
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.data.windows import select_split, subsample_evenly
from ultramn.evaluate.metrics import dice
from ultramn.model.checkpoint import load_checkpoint
from ultramn.preprocess import normalize_intensity, resize_frames, resize_masks
from ultramn.windowing import default_stride, stitch_masks, window_indices


def frame_dice(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> list[float]:
    """Per-frame Dice of ``bool [N, H, W]`` masks (:func:`ultramn.evaluate.metrics.dice`: 1 where both are empty)."""
    return [dice(p, g) for p, g in zip(pred, truth, strict=True)]


def position_dice(model: torch.nn.Module, data: Path, split: str, n_clips: int | None) -> tuple[list[float], float, float]:
    """``(mean Dice per window position [T], stitched frame mean, stitched clip mean)``."""
    t, h, w = CONTRACT.window_shape
    by_position: list[list[float]] = [[] for _ in range(t)]
    stitched_frames: list[float] = []
    stitched_clips: list[float] = []
    for rec in subsample_evenly(select_split(read_manifest(data), split), n_clips):
        clip = read_clip(data / rec.file)
        x = normalize_intensity(resize_frames(clip.frames, h, w))
        truth = resize_masks(clip.masks, h, w) > 0
        n = x.shape[0]
        idx = window_indices(n, t, 1)
        chunks = []
        with torch.no_grad():
            for s in range(0, len(idx), 8):
                chunks.append(torch.sigmoid(model(torch.from_numpy(x[idx[s : s + 8]][:, None]))[1])[:, 0].numpy())
        probs = np.concatenate(chunks)  # [n_windows, T, H, W]
        for k in np.flatnonzero(idx[:, -1] - idx[:, 0] == t - 1):  # whole windows (no repeated edge frames)
            for p, d in enumerate(frame_dice(probs[k] > 0.5, truth[idx[k]])):
                by_position[p].append(d)
        product = window_indices(n, t, default_stride(t))
        rows = [int(np.flatnonzero((idx == r).all(axis=1))[0]) for r in product]
        stitched = frame_dice(stitch_masks(probs[rows], product, n) > 0.5, truth)
        stitched_frames.extend(stitched)
        stitched_clips.append(float(np.mean(stitched)))
    return [float(np.mean(v)) if v else float("nan") for v in by_position], float(np.mean(stitched_frames)), float(np.mean(stitched_clips))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=named_checkpoint, action="append", required=True, help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=None)
    args = ap.parse_args()
    models: list[tuple[str, Path]] = args.model
    if not (args.data / "manifest.csv").is_file():
        ap.error(f"no manifest.csv in {args.data}")
    torch.set_num_threads(1)
    t = CONTRACT.window_frames
    print(f"| model | {' | '.join(f'position {p}' for p in range(t))} | stitched (frames) | stitched (clips) |")
    print("|---" * (t + 3) + "|")
    for name, path in models:
        model, _ = load_checkpoint(path, map_location="cpu")
        positions, frames, clips = position_dice(model.eval(), args.data, args.split, args.clips)
        print(f"| {name} | {' | '.join(f'{d:.4f}' for d in positions)} | {frames:.4f} | {clips:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
