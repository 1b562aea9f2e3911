"""Stage ``decode``: the upload (path or bytes) -> :class:`~ultramn.data.decoders.DecodedClip`.

Skipped when the caller already holds the decoded clip (the gateway decodes uploads once,
at request time, to answer bad input with 415/422).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from gateway.pipeline.context import ClipContext
from ultramn.data.decoders import DEFAULT_LIMITS, DecodeLimits, decode, private_names


@dataclass(frozen=True)
class DecodeConfig:
    """Bounds the decoded clip must respect; ``private_names``: the decoder's messages name no
    archive member or NPZ array (the gateway stores a job's error: names may carry patient data)."""

    limits: DecodeLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    private_names: bool = False


def run(ctx: ClipContext, config: DecodeConfig) -> None:
    """Set ``ctx.clip`` (frames ``uint8 [N,H,W]``, fps, spacing)."""
    if ctx.clip is not None:
        return
    if ctx.source is None:
        raise RuntimeError("nothing to decode")
    with private_names() if config.private_names else contextlib.nullcontext():
        ctx.clip = decode(ctx.source, ctx.filename, config.limits)
