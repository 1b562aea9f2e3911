"""Temporal windows: the one place that decides how clips become model windows.

A clip of ``N`` frames is cut into windows of ``T`` frames starting every ``stride``
frames. Frame indices past the clip's end are *edge-padded*: they repeat the last frame.
So a clip shorter than ``T`` (down to a single still image) is one window whose tail
repeats its last frame, and training, evaluation and serving all see short clips the same
way. The default stride is ``T // 2`` (:func:`default_stride`).

Stitching takes, per real frame, the weighted mean of every prediction that maps to it.
The weight depends on the frame's position in its window (:func:`blend_weights`):
``uniform`` weighs every position alike; ``triangular`` (the default) weighs position
``j`` of ``T`` by ``min(j + 1, T - j)``, so the window's centre, which has temporal
context on both sides, counts more than its edges. It costs no extra inference; its
effect on Dice and CSA stability is measured in docs/model-card.md.

After stitching, the per-frame mask probabilities can be averaged over a centred run of
``K`` frames (:func:`temporal_mean_filter`; edge frames repeated; ``K = 1`` leaves them as
they are). It uses neighbouring frames without any learning: docs/model-card.md, "Temporal
filter probe", measures what it adds and how its default was chosen.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy.ndimage import uniform_filter1d

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.floating]

#: How overlapping window predictions are weighted per window position when stitched.
Blend = Literal["triangular", "uniform"]
BLENDS: Final[tuple[str, ...]] = get_args(Blend)
DEFAULT_BLEND: Final[Blend] = "triangular"
#: Frames in the centred temporal mean applied to stitched mask probabilities (1 = off).
#: 5 was chosen on the validation split by a rule fixed in advance (docs/model-card.md,
#: "Temporal filter probe"): Dice +0.0031 and stability error -0.025 mm² against 1.
DEFAULT_TEMPORAL_FILTER: Final[int] = 5


def default_stride(window: int) -> int:
    """Frames between window starts unless a caller chooses: ``T // 2`` (each frame seen twice)."""
    return max(window // 2, 1)


def blend_weights(window: int, blend: Blend = DEFAULT_BLEND) -> npt.NDArray[np.float64]:
    """Stitching weight of each window position: ``float64 [window]``, all > 0."""
    if window < 1:
        raise ValueError("window must be >= 1")
    if blend == "uniform":
        return np.ones(window, dtype=np.float64)
    if blend == "triangular":
        j = np.arange(window, dtype=np.float64)
        return np.minimum(j + 1.0, window - j)
    raise ValueError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Start indices of the windows covering ``n_frames`` frames.

    The last window is shifted back so it ends on the last frame when the clip is at
    least ``window`` long (no padding needed then); shorter clips get one window at 0.
    """
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be >= 1")
    if stride > window:
        raise ValueError(f"a stride of {stride} frames is longer than the {window}-frame window: frames between windows would be skipped")
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def window_indices(n_frames: int, window: int, stride: int) -> IntArray:
    """Frame indices of every window: ``int64 [n_windows, window]`` (edge-padded)."""
    starts = window_starts(n_frames, window, stride)
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(window, dtype=np.int64)[None, :]
    return np.minimum(idx, n_frames - 1)


def take_window(frames: npt.NDArray[np.generic], indices: IntArray) -> npt.NDArray[np.generic]:
    """Frames ``[N,...]`` gathered by one window's ``indices`` -> ``[T,...]``."""
    return np.asarray(frames)[indices]


def stitch_masks(window_probs: FloatArray, indices: IntArray, n_frames: int, blend: Blend = DEFAULT_BLEND) -> npt.NDArray[np.float32]:
    """Weighted mean of per-window mask probabilities onto frames (weights: :func:`blend_weights`).

    ``window_probs``: ``[n_windows, T, H, W]`` in [0, 1]; ``indices`` from
    :func:`window_indices`. Returns ``float32 [n_frames, H, W]``, still in [0, 1].
    """
    if window_probs.shape[:2] != indices.shape:
        raise ValueError(f"probabilities {window_probs.shape} do not match indices {indices.shape}")
    weights = blend_weights(indices.shape[1], blend).astype(np.float32)
    acc = np.zeros((n_frames, *window_probs.shape[2:]), dtype=np.float32)
    total = np.zeros(n_frames, dtype=np.float32)
    # one whole-frame add per window position: much faster than np.add.at on [N,H,W]
    for w in range(indices.shape[0]):
        for j, frame in enumerate(indices[w]):
            acc[frame] += weights[j] * window_probs[w, j]
            total[frame] += weights[j]
    return acc / total.reshape(-1, *([1] * (acc.ndim - 1)))


def stitch_planes(window_plane_probs: FloatArray, indices: IntArray, n_frames: int) -> npt.NDArray[np.float32]:
    """Per-frame plane probabilities: the mean over the windows covering each frame.

    ``window_plane_probs``: ``[n_windows, n_planes]``; returns ``float32 [n_frames, n_planes]``.
    A window counts once per frame it covers, however often padding repeats that frame.
    """
    n_win = indices.shape[0]
    cover = np.zeros((n_frames, n_win), dtype=np.float64)
    for w in range(n_win):
        cover[np.unique(indices[w]), w] = 1.0
    probs = cover @ np.asarray(window_plane_probs, dtype=np.float64)
    return (probs / cover.sum(axis=1, keepdims=True)).astype(np.float32)


def check_temporal_filter(frames: int) -> int:
    """``frames`` if it is a valid filter length (odd, >= 1); else ``ValueError``."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1 or frames % 2 == 0:
        raise ValueError(f"temporal filter length must be an odd whole number >= 1 (1 = off), not {frames!r}")
    return frames


def temporal_mean_filter(probs: FloatArray, frames: int = DEFAULT_TEMPORAL_FILTER) -> npt.NDArray[np.float32]:
    """Centred moving mean over ``frames`` frames of ``[N, ...]`` probabilities -> ``float32 [N, ...]``.

    ``frames`` is odd; before the first and after the last frame the edge frame repeats (so a
    constant clip stays constant and a single still image is unchanged). ``frames = 1``
    returns the input as ``float32``. Values stay in the input's range.
    """
    check_temporal_filter(frames)
    arr = np.asarray(probs, dtype=np.float32)
    if frames == 1 or arr.shape[0] == 1:
        return arr
    return np.asarray(uniform_filter1d(arr, size=frames, axis=0, mode="nearest"), dtype=np.float32)
