"""The :class:`Pipeline`: runs the named stages in order and times each one.

CPU-bound stages run in a worker thread (``asyncio.to_thread``) so the event loop keeps
serving requests; the inference stage is async (gRPC aio). Timings are wall-clock ms per
stage in ``ctx.timings`` (plus ``total``), reported to ``on_stage`` (Prometheus) too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.core.config import Settings
from gateway.pipeline import decode, infer, postprocess, preprocess, roi, stitch, windows
from gateway.pipeline.context import ClipContext
from gateway.triton_client import TritonClient

StageFn = Callable[[ClipContext], Awaitable[None]]


@dataclass(frozen=True)
class PipelineConfig:
    """One config block per stage."""

    decode: decode.DecodeConfig = field(default_factory=decode.DecodeConfig)
    roi: roi.RoiConfig = field(default_factory=roi.RoiConfig)
    preprocess: preprocess.PreprocessConfig = field(default_factory=preprocess.PreprocessConfig)
    windows: windows.WindowConfig = field(default_factory=windows.WindowConfig)
    infer: infer.InferConfig = field(default_factory=infer.InferConfig)
    stitch: stitch.StitchConfig = field(default_factory=stitch.StitchConfig)
    postprocess: postprocess.PostprocessConfig = field(default_factory=postprocess.PostprocessConfig)

    def provenance(self, stride: int | None = None) -> dict[str, Any]:
        """How a clip's windows were cut and merged: a result's ``analysis`` field.

        ``stride``: the request's own stride (frames), else the configured default.
        """
        return {
            "window_frames": self.windows.window,
            "stride": self.windows.stride if stride is None else stride,
            "blend": self.stitch.blend,
            "temporal_filter": self.stitch.temporal_filter,
            "temporal_min_similarity": self.stitch.min_similarity,
            "mask_threshold": self.postprocess.threshold,
        }

    @classmethod
    def from_settings(cls, settings: Settings, private_names: bool = True) -> PipelineConfig:
        """The stage configs the gateway settings imply (``private_names``: see :class:`decode.DecodeConfig`;
        off only where the messages go to the clips' owner and are not stored, as in ``ultramn batch --triton``)."""
        return cls(
            decode=decode.DecodeConfig(limits=settings.decode_limits, private_names=private_names),
            roi=roi.RoiConfig(enabled=settings.roi_enabled),
            windows=windows.WindowConfig(stride=settings.default_stride),
            stitch=stitch.StitchConfig(
                blend=settings.stitch_blend,
                temporal_filter=settings.stitch_temporal_filter,
                min_similarity=settings.stitch_temporal_min_similarity,
            ),
            postprocess=postprocess.PostprocessConfig(threshold=settings.mask_threshold),
        )


class Pipeline:
    """Named stages ``[(name, fn)]`` run in order; see the module docstring.

    ``config`` is what the stages were built from (:meth:`PipelineConfig.provenance` reports it).
    """

    def __init__(
        self,
        stages: list[tuple[str, StageFn]],
        config: PipelineConfig,
        on_stage: Callable[[str, float], None] | None = None,
    ) -> None:
        self.stages = stages
        self.config = config
        self.on_stage = on_stage

    @property
    def names(self) -> list[str]:
        """Stage names in order."""
        return [name for name, _ in self.stages]

    async def run(self, ctx: ClipContext) -> ClipContext:
        """Run every stage on ``ctx``; ``ctx.timings`` gets ms per stage and ``total``."""
        start = time.perf_counter()
        for name, fn in self.stages:
            t0 = time.perf_counter()
            await fn(ctx)
            seconds = time.perf_counter() - t0
            ctx.timings[name] = round(seconds * 1000.0, 2)
            if self.on_stage:
                self.on_stage(name, seconds)
        ctx.timings["total"] = round((time.perf_counter() - start) * 1000.0, 2)
        return ctx


def _threaded(fn: Callable[[ClipContext], None]) -> StageFn:
    async def stage(ctx: ClipContext) -> None:
        await asyncio.to_thread(fn, ctx)

    return stage


def build_pipeline(config: PipelineConfig, client: TritonClient, on_stage: Callable[[str, float], None] | None = None) -> Pipeline:
    """``decode -> roi -> preprocess -> windows -> inference -> stitch -> postprocess``."""
    c = config

    async def inference(ctx: ClipContext) -> None:
        await infer.run(ctx, client, c.infer)

    return Pipeline(
        [
            ("decode", _threaded(lambda ctx: decode.run(ctx, c.decode))),
            ("roi", _threaded(lambda ctx: roi.run(ctx, c.roi))),
            ("preprocess", _threaded(lambda ctx: preprocess.run(ctx, c.preprocess))),
            ("windows", _threaded(lambda ctx: windows.run(ctx, c.windows))),
            ("inference", inference),
            ("stitch", _threaded(lambda ctx: stitch.run(ctx, c.stitch))),
            ("postprocess", _threaded(lambda ctx: postprocess.run(ctx, c.postprocess))),
        ],
        config,
        on_stage,
    )
