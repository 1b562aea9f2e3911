"""Dice of the masks the gateway's pipeline serves, with its ROI stage on and off, on clips with truth.

Run::

    .venv/bin/python bench/roi_served_dice.py --checkpoint runs/finetune-usgra/best.pt --data data/usgra-test

Each clip of ``--data`` (the project's dataset layout, ``--split``) goes through the gateway's
own pipeline (decode-free: the clip's frames; ROI, preprocessing, windows, stitching,
postprocessing), with the model of ``--checkpoint`` run by torch in float32 in place of
Triton (the served uint8 encoding is a separate, documented difference). With the ROI off,
the pipeline sees whole frames, as ``ultramn evaluate`` and training do; with it on, the box
:func:`gateway.pipeline.roi.find_roi` finds, mapped back to the frame. Per frame the Dice of
the served mask against the truth at the clip's own resolution; prints the clips whose clip
Dice differs by more than ``--report`` between the two, then the mean over frames of each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.pipeline import ClipContext, PipelineConfig, build_pipeline
from gateway.pipeline.roi import RoiConfig
from gateway.triton_client import TritonClient, WindowOutput
from ultramn.data.clipio import read_clip
from ultramn.data.decoders import DecodedClip
from ultramn.data.manifest import read_manifest
from ultramn.evaluate.metrics import dice
from ultramn.model import load_checkpoint


class TorchWindows:
    """Answers :meth:`TritonClient.infer_window` with a torch model (float32 probabilities)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    async def infer_window(self, window: npt.NDArray[np.float32]) -> WindowOutput:
        """``window``: ``[1,T,H,W] float32``; the plane probabilities ``[4]`` and mask probabilities ``[T,H,W]``."""
        with torch.no_grad():
            plane_logits, mask_logits = self.model(torch.from_numpy(np.ascontiguousarray(window[None])))
        return WindowOutput(plane_probs=torch.softmax(plane_logits, dim=1)[0].numpy(), mask_probs=torch.sigmoid(mask_logits)[0, 0].numpy())


def served_masks(
    model: torch.nn.Module, frames: npt.NDArray[np.uint8], spacing: float | None, roi: bool
) -> tuple[npt.NDArray[np.bool_], tuple[int, ...]]:
    """The pipeline's masks ``[N,H,W] bool`` for ``frames [N,H,W] uint8`` and its ROI box ``(x0, y0, x1, y1)``."""
    config = replace(PipelineConfig(), roi=RoiConfig(enabled=roi))
    pipeline = build_pipeline(config, cast(TritonClient, TorchWindows(model)))
    ctx = ClipContext(job_id="bench", clip=DecodedClip(frames, 25.0, spacing, None, "npy"))
    ctx = asyncio.run(pipeline.run(ctx))
    assert ctx.masks is not None and ctx.result is not None
    box = ctx.result["roi"]
    return ctx.masks > 0, (box["x0"], box["y0"], box["x1"], box["y1"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a dataset in the project's layout (manifest.csv)")
    ap.add_argument("--split", default="all", help="train, val, test or all")
    ap.add_argument("--report", type=float, default=0.05, help="print clips whose Dice differs by more than this")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (args.data / "manifest.csv").is_file():
        ap.error(f"no manifest.csv in {args.data}")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    records = [r for r in read_manifest(args.data) if args.split == "all" or r.split == args.split]
    if not records:
        ap.error(f"no clips of split {args.split!r} in {args.data}")
    scores: dict[str, list[float]] = {"roi on": [], "roi off": []}
    cropped = 0
    for rec in records:
        clip = read_clip(args.data / rec.file)
        truth = clip.masks > 0
        per_clip = {}
        boxes = {}
        for name, roi in (("roi on", True), ("roi off", False)):
            masks, boxes[name] = served_masks(model, clip.frames, rec.pixel_spacing_mm, roi)
            frame_dice = [dice(p, g) for p, g in zip(masks, truth, strict=True)]
            scores[name].extend(frame_dice)
            per_clip[name] = float(np.mean(frame_dice))
        on_box = boxes["roi on"]
        h, w = clip.frames.shape[1:]
        cropped += on_box != (0, 0, w, h)
        if abs(per_clip["roi on"] - per_clip["roi off"]) > args.report:
            print(f"{rec.clip_id}: box {on_box} of {w}x{h}: Dice {per_clip['roi on']:.3f} with the ROI, {per_clip['roi off']:.3f} without")
    on, off = (float(np.mean(scores[k])) for k in ("roi on", "roi off"))
    print(
        f"{len(records)} clips, {len(scores['roi on'])} frames ({cropped} clips cropped): "
        f"Dice {on:.4f} with the ROI, {off:.4f} without (whole frames, as evaluate); difference {on - off:+.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
