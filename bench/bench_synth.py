"""Benchmark the synthetic clip generator: frames/s at the default size, and an extrapolation.

Run: ``.venv/bin/python bench/bench_synth.py [--participants 4] [--workers N] [--size 256 256]``.
Prints the measured generator throughput (all workers together) and the time 300
participants x 8 clips would take at that rate (the README's training set is 100
participants: a third of that). Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import generate_dataset
from ultramn.data.synth.psf import warm_cache

TRAINING_SET_PARTICIPANTS = 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=None, help="frames per clip (default: sampled 24-48)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = SynthConfig(participants=args.participants, seed=args.seed, height=args.size[0], width=args.size[1], frames=args.frames)
    warm_cache()  # PSF computation (pymust) is one-off: keep it out of the timing
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        records = generate_dataset(cfg, Path(tmp), workers=args.workers)
        elapsed = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.npz")) / 1e6
    n_frames = sum(r.n_frames for r in records)
    fps = n_frames / elapsed
    per_participant = elapsed / args.participants
    est = per_participant * TRAINING_SET_PARTICIPANTS
    print(f"machine: {os.cpu_count()} CPUs, workers={args.workers}, size={args.size[0]}x{args.size[1]}")
    print(f"generated {len(records)} clips, {n_frames} frames in {elapsed:.1f} s (incl. writing {size_mb:.1f} MB of npz)")
    print(f"throughput: {fps:.1f} frames/s total, {1e3 * elapsed * args.workers / n_frames:.1f} ms per frame per worker")
    print(f"extrapolated: {TRAINING_SET_PARTICIPANTS} participants ({8 * TRAINING_SET_PARTICIPANTS} clips) in {est / 60:.1f} min")


if __name__ == "__main__":
    main()
