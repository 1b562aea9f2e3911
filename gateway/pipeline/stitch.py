"""Stage ``stitch``: weighted mean of overlapping windows per frame (:mod:`ultramn.windowing`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.context import ClipContext
from ultramn.windowing import (
    DEFAULT_BLEND,
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_TEMPORAL_FILTER,
    Blend,
    check_min_similarity,
    check_temporal_filter,
    stitch_masks,
    stitch_planes,
    temporal_mean_filter,
)


@dataclass(frozen=True)
class StitchConfig:
    """``blend``: per-position weighting of mask probabilities (:func:`ultramn.windowing.blend_weights`);
    ``temporal_filter``: frames in the centred mean of the stitched mask probabilities
    (:func:`ultramn.windowing.temporal_mean_filter`; 1 = off); ``min_similarity``: its motion gate
    (neighbours whose map differs more are left out; 0 = every neighbour).

    Plane probabilities are the plain mean of the windows covering each frame.
    """

    blend: Blend = DEFAULT_BLEND
    temporal_filter: int = DEFAULT_TEMPORAL_FILTER
    min_similarity: float = DEFAULT_MIN_SIMILARITY

    def __post_init__(self) -> None:
        check_temporal_filter(self.temporal_filter)
        check_min_similarity(self.min_similarity)


def run(ctx: ClipContext, config: StitchConfig = StitchConfig()) -> None:
    """Set ``ctx.frame_planes`` ``[N,P]`` and ``ctx.frame_mask_probs`` ``[N,H,W]`` (model geometry)."""
    if ctx.window_masks is None or ctx.window_planes is None or ctx.indices is None:
        raise RuntimeError("inference must run before stitch")
    n = ctx.require_clip().n_frames
    stitched = stitch_masks(ctx.window_masks, ctx.indices, n, config.blend)
    ctx.frame_mask_probs = temporal_mean_filter(stitched, config.temporal_filter, config.min_similarity)
    ctx.frame_planes = stitch_planes(ctx.window_planes, ctx.indices, n)
