"""Intensity normalisation and resizing shared by training, evaluation and serving.

One function each, used everywhere: the gateway must feed the model exactly what
training fed it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image


def normalize_intensity(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Grey levels ``uint8 [...]`` -> model intensities ``float32 [...]`` in [0, 1]."""
    if frames.dtype != np.uint8:
        raise TypeError(f"expected uint8 grey levels, got {frames.dtype}")
    return frames.astype(np.float32) * np.float32(1.0 / 255.0)


def resize_frames(frames: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Resize ``uint8 [N,H,W]`` frames to ``[N,height,width]`` (bilinear, antialiased)."""
    if frames.shape[1:] == (height, width):
        return frames
    out = np.empty((frames.shape[0], height, width), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))
    return out


def resize_masks(masks: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Resize binary ``uint8 [N,H,W]`` masks to ``[N,height,width]`` (area-weighted, then >= 0.5)."""
    if masks.shape[1:] == (height, width):
        return masks
    probs = resize_probabilities(masks.astype(np.float32), height, width)
    return (probs >= 0.5).astype(np.uint8)


def _resize_probability(prob: npt.NDArray[np.floating], height: int, width: int) -> npt.NDArray[np.float32]:
    """One ``[H,W]`` probability map resized (bilinear) to ``float32 [height,width]``."""
    if prob.shape == (height, width):
        return prob.astype(np.float32, copy=False)
    return np.asarray(Image.fromarray(prob.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR))


def resize_probabilities(probs: npt.NDArray[np.float32], height: int, width: int) -> npt.NDArray[np.float32]:
    """Resize ``float32 [N,H,W]`` probability maps (bilinear) to ``[N,height,width]``."""
    if probs.shape[1:] == (height, width):
        return probs.astype(np.float32, copy=False)
    out = np.empty((probs.shape[0], height, width), dtype=np.float32)
    for i, p in enumerate(probs):
        out[i] = _resize_probability(p, height, width)
    return out


def threshold_resized(probs: npt.NDArray[np.float32], threshold: float, out: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``uint8`` masks ``(resize(probs) >= threshold)`` written into ``out [N,height,width]`` (it may be
    a view into a larger array); ``out``. Equal to thresholding :func:`resize_probabilities`, but
    one frame at a time: no ``float32 [N,height,width]`` array (4 bytes per output pixel) is made."""
    if len(probs) != len(out):
        raise ValueError(f"{len(probs)} probability maps for {len(out)} masks")
    height, width = out.shape[1:]
    for i, p in enumerate(probs):
        np.greater_equal(_resize_probability(p, height, width), threshold, out=out[i], casting="unsafe")
    return out
