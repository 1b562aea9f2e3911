"""Stage ``stitch``: weighted mean of overlapping windows per frame (:mod:`ultramn.windowing`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.context import ClipContext
from ultramn.windowing import DEFAULT_BLEND, Blend, stitch_masks, stitch_planes


@dataclass(frozen=True)
class StitchConfig:
    """``blend``: per-position weighting of mask probabilities (:func:`ultramn.windowing.blend_weights`).

    Plane probabilities are the plain mean of the windows covering each frame.
    """

    blend: Blend = DEFAULT_BLEND


def run(ctx: ClipContext, config: StitchConfig = StitchConfig()) -> None:
    """Set ``ctx.frame_planes`` ``[N,P]`` and ``ctx.frame_mask_probs`` ``[N,H,W]`` (model geometry)."""
    if ctx.window_masks is None or ctx.window_planes is None or ctx.indices is None:
        raise RuntimeError("inference must run before stitch")
    n = ctx.require_clip().n_frames
    ctx.frame_mask_probs = stitch_masks(ctx.window_masks, ctx.indices, n, config.blend)
    ctx.frame_planes = stitch_planes(ctx.window_planes, ctx.indices, n)
