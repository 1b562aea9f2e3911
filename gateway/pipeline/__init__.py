"""The analysis pipeline: named stages, Holoscan-style, each a small module with a config block.

``decode -> roi -> preprocess -> windows -> inference -> stitch -> postprocess``

Every stage reads and extends one :class:`~gateway.pipeline.context.ClipContext`; the
:class:`~gateway.pipeline.runner.Pipeline` runs them in order and records each stage's
wall time (ms) in ``ctx.timings``.
"""

from gateway.pipeline.context import ClipContext
from gateway.pipeline.runner import Pipeline, PipelineConfig, build_pipeline

__all__ = ["ClipContext", "Pipeline", "PipelineConfig", "build_pipeline"]
