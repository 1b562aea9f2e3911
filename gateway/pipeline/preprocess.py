"""Stage ``preprocess``: crop to the ROI, resize to the model's H,W, normalise intensities.

Uses the one shared implementation (:mod:`ultramn.preprocess`) so the gateway feeds the
model exactly what training fed it. Output ``ctx.model_frames``: ``float32 [N,H,W]`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.context import ClipContext
from ultramn.contract import CONTRACT
from ultramn.preprocess import normalize_intensity, resize_frames


@dataclass(frozen=True)
class PreprocessConfig:
    """Model input size (pixels), from the contract."""

    height: int = CONTRACT.height
    width: int = CONTRACT.width


def run(ctx: ClipContext, config: PreprocessConfig) -> None:
    """Set ``ctx.model_frames``."""
    clip = ctx.require_clip()
    x0, y0, x1, y1 = ctx.roi or (0, 0, clip.frames.shape[2], clip.frames.shape[1])
    crop = clip.frames[:, y0:y1, x0:x1]
    ctx.model_frames = normalize_intensity(resize_frames(crop, config.height, config.width))
