"""How much the temporal branches add to their blocks' features, on real windows.

Run: ``.venv/bin/python bench/temporal_branch_share.py --model NAME=CKPT [--model ...] --data DIR
[--split test] [--clips 16]``.

Every :class:`~ultramn.model.blocks.TemporalResidual` computes ``y + branch(y)``, with a
branch that is 0 at initialisation. Its parameters alone do not say how large its output is
(the ``scaled_norm`` branch normalises, the ``zero_conv`` one does not), so this measures it:
the first window (the contract's ``T`` frames, resized to ``H x W``, intensities in [0, 1]) of
``--clips`` clips of the split, taken evenly over the manifest, goes through each model in
evaluation mode, and for each branch the RMS of ``branch(y)`` is divided by the RMS of ``y``
over all those windows (0 = the branch adds nothing; dimensionless). Prints one markdown row
per branch and model. Not part of the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.checkpoints import named_checkpoint
from ultramn.contract import CONTRACT
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.data.windows import select_split, subsample_evenly
from ultramn.model.blocks import TemporalResidual
from ultramn.model.checkpoint import load_checkpoint
from ultramn.preprocess import normalize_intensity, resize_frames
from ultramn.windowing import take_window, window_indices


def first_windows(data: Path, split: str, n_clips: int) -> torch.Tensor:
    """``float32 [n_clips,1,T,H,W]``: the first window of ``n_clips`` clips of ``split``, evenly chosen."""
    t, h, w = CONTRACT.window_frames, CONTRACT.height, CONTRACT.width
    out = []
    for rec in subsample_evenly(select_split(read_manifest(data), split), n_clips):
        frames = read_clip(data / rec.file).frames
        idx = window_indices(frames.shape[0], t, t)[0]
        window = np.asarray(take_window(frames, idx), dtype=np.uint8)
        out.append(normalize_intensity(resize_frames(window, h, w)))
    return torch.from_numpy(np.stack(out)[:, None])


def branch_shares(model: torch.nn.Module, windows: torch.Tensor) -> dict[str, float]:
    """``{branch name: RMS(branch(y)) / RMS(y)}`` over ``windows [B,1,T,H,W]`` (model in eval mode)."""
    sums: dict[str, list[float]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, TemporalResidual):

            def hook(mod: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor, name: str = name) -> None:
                y = args[0]
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += float((out - y).square().sum())
                acc[1] += float(y.square().sum())

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for window in windows.split(4):
                model(window)
    finally:
        for h in hooks:
            h.remove()
    return {name: (branch / max(inp, 1e-12)) ** 0.5 for name, (branch, inp) in sums.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=named_checkpoint, action="append", required=True, help="NAME=CHECKPOINT (repeatable)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=16)
    args = ap.parse_args()
    models: list[tuple[str, Path]] = args.model
    if not (args.data / "manifest.csv").is_file():
        ap.error(f"no manifest.csv in {args.data}")
    torch.set_num_threads(1)
    windows = first_windows(args.data, args.split, args.clips)
    print(f"{windows.shape[0]} windows {tuple(windows.shape[1:])} of {args.data} ({args.split})\n")
    print("| model | branch | RMS(branch) / RMS(input) |\n|---|---|---|")
    for name, path in models:
        model, _ = load_checkpoint(path, map_location="cpu")
        shares = branch_shares(model.eval(), windows)
        if not shares:
            print(f"| {name} | (no temporal branches) | |")
        for branch, share in shares.items():
            print(f"| {name} | {branch} | {share:.4f} |")
        if shares:
            print(f"| {name} | **mean** | **{float(np.mean(list(shares.values()))):.4f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
