"""The state one clip carries through the pipeline stages (shapes and units in comments)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.data.decoders import DecodedClip

#: ``(x0, y0, x1, y1)`` px, half-open, in original frame coordinates.
Box = tuple[int, int, int, int]


@dataclass
class ClipContext:
    """Inputs (set by the caller) and stage outputs (set by the stages) of one analysis."""

    # inputs
    job_id: str
    source: Path | bytes | None = None
    filename: str | None = None
    pixel_spacing_mm: float | None = None  # request override (mm/px, isotropic)
    stride: int | None = None  # frames between window starts
    progress: Callable[[int, int], None] | None = None  # (windows done, total)
    # decode
    clip: DecodedClip | None = None
    # roi
    roi: Box | None = None
    # preprocess: float32 [N,H,W] in [0,1] at the model's H,W
    model_frames: npt.NDArray[np.float32] | None = None
    # windows: int64 [n_windows, T]
    indices: npt.NDArray[np.int64] | None = None
    # inference: float32 [n_windows, P] and float32 [n_windows, T, H, W]
    window_planes: npt.NDArray[np.float32] | None = None
    window_masks: npt.NDArray[np.float32] | None = None
    # stitch: float32 [N,P] and float32 [N,H,W] (model geometry)
    frame_planes: npt.NDArray[np.float32] | None = None
    frame_mask_probs: npt.NDArray[np.float32] | None = None
    # postprocess: uint8 [N,H0,W0] 0/1 in original geometry, and the result JSON
    masks: npt.NDArray[np.uint8] | None = None
    result: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage

    def require_clip(self) -> DecodedClip:
        """The decoded clip (after the decode stage)."""
        if self.clip is None:
            raise RuntimeError("the decode stage has not run")
        return self.clip
