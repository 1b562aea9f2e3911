"""Benchmark the overlay video (``GET /v1/analyses/{id}/overlay.mp4``): encode time per frame by frame size.

Run: ``.venv/bin/python bench/bench_overlay_video.py [--frames 100] [--sizes 256x256 480x640 1080x1920] [--rounds 3]``.
One process, the function the route calls (:func:`gateway.store.overlay_video.write_overlay_mp4`,
libx264 ``veryfast``, crf 18, with captions) on synthetic speckle frames with a moving nerve
disc, and beside it the PNG encode of the same frames' ``overlay.png`` (what a client pays
fetching every frame's overlay instead), so the two read as a ratio measured in one run.
Prints milliseconds per frame (median of ``--rounds``) and the file size. Not part of the tests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.store.files import overlay_png
from gateway.store.overlay_video import frame_captions, write_overlay_mp4


def clip(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [n,h,w]`` speckle frames (Rayleigh, slowly drifting) and 0/1 masks of a moving disc."""
    rng = np.random.default_rng(seed)
    base = rng.rayleigh(40.0, size=(h, w + n))
    yy, xx = np.mgrid[:h, :w]
    frames = np.empty((n, h, w), np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    r = min(h, w) // 12
    for i in range(n):
        frames[i] = np.clip(base[:, i : i + w], 0, 255)
        disc = (yy - h // 2) ** 2 + (xx - w // 3 - i * w // (3 * n)) ** 2 <= r * r
        frames[i][disc] //= 3
        masks[i][disc] = 1
    return frames, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", nargs="+", default=["256x256", "480x640", "1080x1920"], help="HxW")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = {"frames": [{"plane": "TW", "nerve_present": True, "csa_mm2": 8.5, "csa_px": 850}] * args.frames}
    captions = frame_captions(result, args.frames)
    print(f"{'size':>10} {'mp4 ms/frame':>13} {'png ms/frame':>13} {'mp4/png':>8} {'mp4 KiB':>8} {'png KiB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            frames, masks = clip(args.frames, h, w)
            mp4_ms, png_ms = [], []
            png_bytes = 0
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                video = write_overlay_mp4(frames, masks, Path(tmp) / "o.mp4", fps=25.0, captions=captions)
                mp4_ms.append((time.perf_counter() - t0) * 1000 / args.frames)
                t0 = time.perf_counter()
                png_bytes = sum(len(overlay_png(f, m)) for f, m in zip(frames, masks, strict=True))
                png_ms.append((time.perf_counter() - t0) * 1000 / args.frames)
            mp4, png = statistics.median(mp4_ms), statistics.median(png_ms)
            print(f"{size:>10} {mp4:13.2f} {png:13.2f} {mp4 / png:8.2f} {video.path.stat().st_size / 1024:8.0f} {png_bytes / 1024:8.0f}")


if __name__ == "__main__":
    main()
