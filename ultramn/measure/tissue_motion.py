"""How the imaged tissue moves in the image over a clip: the probe's slide and tilt.

A nerve's centroid is measured in image coordinates, that is relative to the probe. When the
probe slides or tilts during a clip, the whole image content moves, and the centroid moves
with it. :func:`track_tissue` follows the image content from frame to frame by a partially
whitened phase correlation (a speckle-tracking estimate of a translation): for consecutive
frames ``a``, ``b`` the cross-power spectrum of the Hann-windowed frames, divided by the square
root of its magnitude (``whitening`` 0.5: between plain correlation, 0, and phase correlation,
1, where fine noise weighs as much as tissue and gave false peaks), has its inverse transform's
peak at the shift of ``b``'s content against ``a``'s, refined to a fraction of a pixel by a
parabola through the peak and its neighbours. Summing the steps gives each frame's content
displacement from the first frame; the nerve's centroid less that displacement is its motion
against the tissue around it (:func:`ultramn.measure.clip.summarize_clip`). Accuracy against
the synthetic generator's own probe motion: ``bench/probe_motion.py`` (docs/benchmarks.md).

Frames are averaged in blocks down to at most ``max_side`` pixels a side first (speckle is
still trackable there and the FFTs stay cheap); shifts are returned in pixels of the frames
given. One translation per frame pair is a model: a tilt also rotates, compression squeezes
the superficial tissue, and a nerve that glides moves against its surroundings, so the
estimate is the dominant (area-weighted) motion of the image content. Each step's peak ratio
(how many standard deviations the correlation peak stands above the surface's mean) says how
well the two frames matched; below ``min_peak`` (frames too different: a jump of the probe, a
cut in the recording, pure noise) the track is not :attr:`TissueTrack.reliable`. On synthetic
clips consecutive frames gave ratios of 25 and more, unrelated frames at most about 11.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

#: Longest side (pixels) frames are block-averaged down to before tracking.
DEFAULT_MAX_SIDE: Final[int] = 256
#: A step whose correlation peak stands fewer standard deviations above the correlation
#: surface's mean than this is not trusted.
DEFAULT_MIN_PEAK: Final[float] = 15.0
#: Exponent of the cross-power spectrum's normalisation: 1 is phase correlation (every
#: frequency weighs the same, so fine noise counts as much as tissue), 0 plain correlation.
DEFAULT_WHITENING: Final[float] = 0.5


@dataclass(frozen=True)
class TissueTrack:
    """The image content's displacement over a clip.

    ``shifts_px``: ``[N, 2]`` float64, ``(x, y)`` of frame ``t``'s content against frame 0's, in
    pixels of the frames given (x to the right, y down; row 0 is ``(0, 0)``).
    ``peaks``: ``[N - 1]`` peak ratio of each step (standard deviations above the correlation's mean).
    ``reliable``: every step's peak reached the threshold the track was made with.
    """

    shifts_px: F64
    peaks: F64
    reliable: bool


def _block_mean(frame: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.float64]:
    """``[H, W]`` averaged over ``factor x factor`` blocks (edge rows/columns that do not fill a block are dropped)."""
    h, w = frame.shape
    hh, ww = h // factor * factor, w // factor * factor
    if factor == 1:
        return frame.astype(np.float64)
    return frame[:hh, :ww].reshape(hh // factor, factor, ww // factor, factor).mean(axis=(1, 3))


def _parabola(minus: float, centre: float, plus: float) -> float:
    """Offset (-0.5..0.5) of a parabola's vertex through three equally spaced samples."""
    denom = minus - 2.0 * centre + plus
    return 0.0 if denom == 0 else float(np.clip(0.5 * (minus - plus) / denom, -0.5, 0.5))


def _step(
    a_spec: npt.NDArray[np.complex128], b_spec: npt.NDArray[np.complex128], shape: tuple[int, int], whitening: float
) -> tuple[float, float, float]:
    """``(dx, dy, peak_ratio)``: the shift of ``b``'s content against ``a``'s from their spectra."""
    cross = b_spec * np.conj(a_spec)
    cross /= np.abs(cross) ** whitening + 1e-12
    corr = np.fft.irfft2(cross, s=shape)
    h, w = shape
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = float(corr[iy, ix])
    ratio = (peak - float(corr.mean())) / (float(corr.std()) + 1e-12)
    dy = float(iy) + _parabola(float(corr[(iy - 1) % h, ix]), peak, float(corr[(iy + 1) % h, ix]))
    dx = float(ix) + _parabola(float(corr[iy, (ix - 1) % w]), peak, float(corr[iy, (ix + 1) % w]))
    return (dx - w if dx > w / 2 else dx), (dy - h if dy > h / 2 else dy), ratio


def track_tissue(
    frames: npt.ArrayLike,
    max_side: int = DEFAULT_MAX_SIDE,
    min_peak: float = DEFAULT_MIN_PEAK,
    whitening: float = DEFAULT_WHITENING,
) -> TissueTrack:
    """The displacement of ``frames``' content (``[N, H, W]`` uint8) from frame 0, frame by frame.

    A single frame gives ``[[0, 0]]``; frames smaller than 8 pixels a side after block
    averaging cannot be tracked: their track is all zeros and not reliable.
    """
    arr = np.asarray(frames)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be [N, H, W] uint8, got {arr.dtype} {arr.shape}")
    n, h, w = arr.shape
    if n == 0:
        raise ValueError("no frames to track")
    factor = max(1, math.ceil(max(h, w) / max_side))
    if h // factor < 8 or w // factor < 8:
        return TissueTrack(np.zeros((n, 2), np.float64), np.zeros(max(n - 1, 0), np.float64), n == 1)
    shape = (h // factor, w // factor)
    window = np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
    shifts = np.zeros((n, 2), np.float64)
    peaks = np.zeros(max(n - 1, 0), np.float64)
    prev = None
    for t in range(n):  # one frame at a time: a long clip of large frames never exists in floats
        small = _block_mean(arr[t], factor)
        spec = np.fft.rfft2((small - small.mean()) * window)
        if prev is not None:
            dx, dy, peaks[t - 1] = _step(prev, spec, shape, whitening)
            shifts[t] = shifts[t - 1] + (dx * factor, dy * factor)
        prev = spec
    return TissueTrack(shifts, peaks, bool(np.all(peaks >= min_peak)))
