"""Benchmark the ROI stage (:func:`gateway.pipeline.roi.find_roi`) against frame size.

Run: ``.venv/bin/python bench/bench_roi.py [--sizes 256x256 1080x1920 2048x2048] [--frames 16 2] [--scipy]``.
One process. For each size and frame count, a synthetic screen capture (speckled image in a
black frame) goes through ``find_roi``; the table gives seconds per clip, the median of
``--rounds`` rounds. ``--scipy`` also times the opening and closing with scipy's 2D binary
morphology (what the stage used before 2026-12-01) on the same masks, side by side, and
checks that both give the same masks. Not part of the tests.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from gateway.pipeline.roi import RoiConfig, _closing, _odd, _opening, find_roi, temporal_max


def screen(frames: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``uint8 [frames,h,w]``: speckle in the middle 60 % x 50 %, black around it."""
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, h, w), np.uint8)
    ys, xs = slice(h // 10, h // 10 + h // 2), slice(w // 5, w // 5 + w * 3 // 5)
    out[:, ys, xs] = rng.integers(20, 220, size=(frames, h // 2, w * 3 // 5), dtype=np.uint8)
    return out


def seconds(fn: Callable[[], object], rounds: int) -> float:
    """Median wall seconds of ``rounds`` calls of ``fn``."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def separable(bright: np.ndarray, k: int, gap: int) -> np.ndarray:
    """The stage's opening then closing (separable min/max filters)."""
    return _closing(_opening(bright, k), gap)


def scipy_2d(bright: np.ndarray, k: int, gap: int) -> np.ndarray:
    """The same with scipy's 2D binary morphology (the stage before 2026-12-01)."""
    opened = ndi.binary_opening(bright, structure=np.ones((k, k), bool))
    return np.asarray(ndi.binary_closing(opened, structure=np.ones((gap, gap), bool), border_value=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x256", "1080x1920", "2048x2048"], help="HxW")
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scipy", action="store_true", help="also time scipy's 2D binary morphology (slow on large frames)")
    args = ap.parse_args()
    cfg = RoiConfig()
    print("| frames | size | find_roi s | morphology s (separable) |" + (" morphology s (scipy 2D) | ratio |" if args.scipy else ""))
    print("|---|---|---|---|" + ("---|---|" if args.scipy else ""))
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for n in args.frames:
            frames = screen(n, h, w)
            bright = temporal_max(frames, cfg.max_frames) > cfg.threshold
            k, gap = _odd(min(h, w) * cfg.text_kernel_frac), _odd(min(h, w) * cfg.gap_frac)
            total = seconds(functools.partial(find_roi, frames, cfg), args.rounds)
            fast = seconds(functools.partial(separable, bright, k, gap), args.rounds)
            row = f"| {n} | {h} x {w} | {total:.3f} | {fast:.3f} |"
            if args.scipy:
                old = seconds(functools.partial(scipy_2d, bright, k, gap), 1)
                assert np.array_equal(scipy_2d(bright, k, gap), separable(bright, k, gap)), "masks differ"
                row += f" {old:.2f} | {old / fast:.0f}x |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
