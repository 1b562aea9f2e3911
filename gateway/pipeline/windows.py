"""Stage ``windows``: temporal windows of T frames every ``stride`` frames (tail edge-padded).

See :mod:`ultramn.windowing`; a still image is one window of its frame repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline.context import ClipContext
from ultramn.contract import CONTRACT
from ultramn.windowing import default_stride, window_indices


@dataclass(frozen=True)
class WindowConfig:
    """Window length T (from the contract) and default stride (frames)."""

    window: int = CONTRACT.window_frames
    stride: int = default_stride(CONTRACT.window_frames)


def run(ctx: ClipContext, config: WindowConfig) -> None:
    """Set ``ctx.indices`` ``int64 [n_windows, T]``."""
    n = ctx.require_clip().n_frames
    # a request's stride of 0 is refused (ValueError), as the API and the CLIs refuse it, not taken for the default
    ctx.indices = window_indices(n, config.window, config.stride if ctx.stride is None else ctx.stride)
