"""Benchmark the training data path: milliseconds per training window, decoding vs cached.

Run: ``.venv/bin/python bench/bench_windows.py [--data data/synth] [--config configs/ultramn.toml] [--windows 200]``.
One process, one torch thread. The first pass over ``--windows`` items decodes every clip
(``.npz`` read, resize to the contract, augmentation); the second pass, the next epoch's
windows of the same clips, finds them in the clip cache. This is the data cost an epoch pays
per window on top of the model's step, and why the GPU plan loads data in the main process
(DataLoader workers start afresh every epoch and lose their cache). Not part of the tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ultramn.data.augment import AugmentConfig
from ultramn.data.windows import WindowDataset
from ultramn.train.config import load_config


def timed_pass(ds: WindowDataset, n: int) -> float:
    """Mean milliseconds per item over items ``0..n-1``."""
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/synth"))
    ap.add_argument("--config", type=Path, default=Path("configs/ultramn.toml"), help="augmentation and windows per clip from here")
    ap.add_argument("--windows", type=int, default=200, help="items per pass")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    ds = WindowDataset(
        args.data,
        split="train",
        mode="train",
        windows_per_clip=cfg.data.windows_per_clip,
        augment=AugmentConfig(**cfg.data.augment),
        seed=cfg.seed,
        cache_mb=1e6,
    )
    n = min(args.windows, len(ds))
    ds.set_epoch(0)
    cold = timed_pass(ds, n)
    ds.set_epoch(1)
    warm = timed_pass(ds, n)
    per_epoch = len(ds)
    print(f"{n} training windows of {args.data} ({per_epoch} per epoch), 1 thread:")
    print(f"  decoding: {cold:.1f} ms/window   cached: {warm:.1f} ms/window   ratio {cold / warm:.1f}x")
    print(f"  one epoch's data: {cold * per_epoch / 1000:.0f} s decoding, {warm * per_epoch / 1000:.0f} s cached")


if __name__ == "__main__":
    main()
