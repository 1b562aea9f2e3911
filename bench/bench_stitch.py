"""Benchmark the stitch stage: window stitching and the temporal filter, per clip, side by side.

Run: ``.venv/bin/python bench/bench_stitch.py [--frames 36] [--filters 1 3 5] [--gates 0 0.8] [--rounds 5]``.
One process. A clip of ``--frames`` frames at the contract's size (160 x 160) is
cut into windows (stride T/2); window probabilities ``float32 [n_windows,T,H,W]`` (a nerve
disc of radius 20 px that stays, plus noise, so every neighbour passes a motion gate: the
gated filter's most expensive case) are stitched (:func:`ultramn.windowing.stitch_masks`) and
the result filtered (:func:`ultramn.windowing.temporal_mean_filter`) with each length and
each motion gate (0 = the plain mean). Prints milliseconds per
clip and per frame, the median of ``--rounds`` rounds, so the filter's cost reads against the
stitch it follows and the model's few milliseconds per frame. Not part of the tests.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

from ultramn.contract import CONTRACT
from ultramn.windowing import DEFAULT_MIN_SIMILARITY, default_stride, stitch_masks, temporal_mean_filter, window_indices


def median_ms(fn: Callable[[], object], rounds: int, repeat: int = 20) -> float:
    """Median over ``rounds`` of the mean milliseconds of ``repeat`` calls of ``fn``."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - t0) / repeat * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=36, help="frames per clip (the synthetic clips have 30-40)")
    ap.add_argument("--filters", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--gates", type=float, nargs="+", default=[0.0, DEFAULT_MIN_SIMILARITY], help="motion gates (0 = plain mean)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    t, h, w = CONTRACT.window_shape
    idx = window_indices(args.frames, t, default_stride(t))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= 20**2).astype(np.float32) * 0.9
    window_probs = np.clip(disc + 0.05 * rng.random((len(idx), t, h, w), dtype=np.float32), 0, 1)
    stitched = stitch_masks(window_probs, idx, args.frames)
    rows = [("stitch", median_ms(lambda: stitch_masks(window_probs, idx, args.frames), args.rounds))]
    for k in args.filters:
        for g in args.gates if k > 1 else [0.0]:
            label = f"filter K={k}" + (f", gate {g:g}" if k > 1 else "")
            rows.append((label, median_ms(functools.partial(temporal_mean_filter, stitched, k, g), args.rounds)))
    print(f"clip of {args.frames} frames at {h} x {w}, {len(idx)} windows; median of {args.rounds} rounds")
    print("| step | ms per clip | ms per frame |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms / args.frames:.3f} |")


if __name__ == "__main__":
    main()
