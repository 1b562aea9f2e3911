"""Run a torch model over whole clips: resize -> normalise -> windows -> model -> stitch -> resize back.

The same stages the gateway runs against Triton (shared code in :mod:`ultramn.preprocess`
and :mod:`ultramn.windowing`), here in-process for evaluation, with two differences: there
is no ROI stage (the whole frame is the model's input; the data sets evaluated here are
B-mode images without screen borders), and the mask probabilities stay float32 where Triton
serves them as uint8. On clips without borders the two agree to Dice >= 0.998 per clip and
plane probabilities within 1e-4; on a screen capture with borders they differ as much as the
ROI changes the input (a one-off audit check on 2026-12-01, not a repo command).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from ultramn.contract import CONTRACT, ModelContract
from ultramn.preprocess import normalize_intensity, resize_frames, resize_probabilities
from ultramn.windowing import (
    DEFAULT_BLEND,
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_TEMPORAL_FILTER,
    Blend,
    default_stride,
    stitch_masks,
    stitch_planes,
    temporal_mean_filter,
    window_indices,
)


@dataclass(frozen=True)
class ClipPrediction:
    """Per-frame outputs at the clip's original resolution.

    ``mask_probs``: ``float32 [N,H,W]`` nerve probability; ``plane_probs``: ``float32 [N,4]``
    (order :data:`ultramn.contract.PLANES`).
    """

    mask_probs: npt.NDArray[np.float32]
    plane_probs: npt.NDArray[np.float32]

    def masks(self, threshold: float = 0.5) -> npt.NDArray[np.uint8]:
        """Binary masks ``uint8 [N,H,W]``."""
        return (self.mask_probs >= threshold).astype(np.uint8)


@torch.no_grad()
def predict_clip(
    model: torch.nn.Module,
    frames: npt.NDArray[np.uint8],
    *,
    contract: ModelContract = CONTRACT,
    stride: int | None = None,
    blend: Blend = DEFAULT_BLEND,
    temporal_filter: int = DEFAULT_TEMPORAL_FILTER,
    temporal_min_similarity: float = DEFAULT_MIN_SIMILARITY,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> ClipPrediction:
    """Predict every frame of ``frames`` (``uint8 [N,H,W]``) with ``model`` (window in, window out).

    Windows every ``stride`` frames (default ``T // 2``), stitched with ``blend``, then the
    mask probabilities averaged over ``temporal_filter`` frames, gated by ``temporal_min_similarity``
    (:mod:`ultramn.windowing`).
    """
    n, h0, w0 = frames.shape
    t, h, w = contract.window_shape
    stride = default_stride(t) if stride is None else stride  # 0 is refused by window_indices, not the default
    small = normalize_intensity(resize_frames(frames, h, w))
    idx = window_indices(n, t, stride)
    model.eval()
    mask_chunks: list[npt.NDArray[np.float32]] = []
    plane_chunks: list[npt.NDArray[np.float32]] = []
    for start in range(0, len(idx), batch_size):
        sel = idx[start : start + batch_size]
        batch = torch.from_numpy(small[sel][:, None]).to(device)
        plane_logits, mask_logits = model(batch)
        plane_chunks.append(torch.softmax(plane_logits.float(), dim=1).cpu().numpy())
        mask_chunks.append(torch.sigmoid(mask_logits.float())[:, 0].cpu().numpy())
    win_masks = np.concatenate(mask_chunks)
    win_planes = np.concatenate(plane_chunks)
    mask_probs = temporal_mean_filter(stitch_masks(win_masks, idx, n, blend), temporal_filter, temporal_min_similarity)
    plane_probs = stitch_planes(win_planes, idx, n)
    return ClipPrediction(mask_probs=resize_probabilities(mask_probs, h0, w0), plane_probs=plane_probs)
