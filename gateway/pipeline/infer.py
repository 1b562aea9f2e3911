"""Stage ``inference``: every window to Triton concurrently (the dynamic batcher merges them).

The :class:`~gateway.triton_client.TritonClient` bounds the requests in flight; the
progress callback sees ``(windows done, total)`` after each answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gateway.pipeline.context import ClipContext
from gateway.triton_client import TritonClient, WindowOutput


@dataclass(frozen=True)
class InferConfig:
    """Nothing to tune here beyond the client's own settings (concurrency, timeout)."""


async def run(ctx: ClipContext, client: TritonClient, config: InferConfig = InferConfig()) -> None:
    """Set ``ctx.window_planes`` ``[n_windows, P]`` and ``ctx.window_masks`` ``[n_windows, T, H, W]``."""
    if ctx.model_frames is None or ctx.indices is None:
        raise RuntimeError("preprocess and windows must run before inference")
    frames, indices = ctx.model_frames, ctx.indices
    total = int(indices.shape[0])
    done = 0
    if ctx.progress:
        ctx.progress(0, total)

    async def one(i: int) -> WindowOutput:
        nonlocal done
        out = await client.infer_window(frames[indices[i]][None])
        done += 1
        if ctx.progress:
            ctx.progress(done, total)
        return out

    tasks = [asyncio.ensure_future(one(i)) for i in range(total)]
    try:
        outputs = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    ctx.window_planes = np.stack([o.plane_probs for o in outputs]).astype(np.float32)
    ctx.window_masks = np.stack([o.mask_probs for o in outputs]).astype(np.float32)
