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
filter probe", measures what it adds and how its default was chosen. A motion gate leaves out
the neighbours whose nerve map differs from the frame's (cosine similarity below
``min_similarity``), so a nerve that moves (a probe slide) is not smeared away
(docs/model-card.md, "Motion gate of the temporal filter").
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
#: The motion gate of that mean: a neighbour whose nerve map has a cosine similarity below this
#: with the frame's own is left out (the nerve moved, e.g. in a probe slide, and averaging it in
#: would smear the nerve away). 0 averages every neighbour. Chosen on validation data
#: (docs/model-card.md, "Motion gate of the temporal filter").
DEFAULT_MIN_SIMILARITY: Final[float] = 0.9
#: A nerve map whose sum of squared probabilities is below this counts as empty (about 4
#: pixels of sure nerve): two empty maps agree, an empty and a non-empty one do not.
EMPTY_MAP_ENERGY: Final[float] = 4.0
#: Frames per block when neighbour maps are compared (bounds the gathered copy's memory).
_SIMILARITY_BLOCK: Final[int] = 64


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


def check_min_similarity(value: float) -> float:
    """``value`` if it is a valid motion gate (a number in [0, 1]); else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"temporal filter similarity gate must be a number in [0, 1] (0 = off), not {value!r}")
    return float(value)


def map_similarity(
    flat: npt.NDArray[np.float32], neighbour: npt.NDArray[np.int64], energy: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """Cosine similarity of each frame's map with its neighbour's: ``flat`` ``[N, P]`` (maps
    flattened), ``neighbour`` ``[N]`` frame indices -> ``float32 [N]`` in [0, 1]; 1 where both
    maps are empty, 0 where one is (:data:`EMPTY_MAP_ENERGY`). ``energy``: each map's sum of
    squares ``[N]``, when the caller has it already."""
    if energy is None:
        energy = np.einsum("ij,ij->i", flat, flat)
    dots = np.empty(len(flat), dtype=np.float32)
    for lo in range(0, len(flat), _SIMILARITY_BLOCK):
        hi = min(lo + _SIMILARITY_BLOCK, len(flat))
        dots[lo:hi] = np.einsum("ij,ij->i", flat[lo:hi], flat[neighbour[lo:hi]])
    e_self, e_nb = energy, energy[neighbour]
    empty_self, empty_nb = e_self < EMPTY_MAP_ENERGY, e_nb < EMPTY_MAP_ENERGY
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.clip(dots / np.sqrt(e_self * e_nb), 0.0, 1.0)
    sim = np.where(empty_self | empty_nb, np.where(empty_self & empty_nb, 1.0, 0.0), sim)
    return sim.astype(np.float32)


def temporal_mean_filter(
    probs: FloatArray, frames: int = DEFAULT_TEMPORAL_FILTER, min_similarity: float = DEFAULT_MIN_SIMILARITY
) -> npt.NDArray[np.float32]:
    """Centred moving mean over ``frames`` frames of ``[N, H, W]`` probabilities -> ``float32 [N, H, W]``,
    gated by motion.

    ``frames`` is odd; before the first and after the last frame the edge frame repeats (so a
    constant clip stays constant and a single still image is unchanged). A neighbour whose map
    has a cosine similarity below ``min_similarity`` with the frame's own (:func:`map_similarity`)
    is left out of that frame's mean, so a nerve that moves between frames is not smeared;
    ``min_similarity = 0`` averages every neighbour. ``frames = 1`` returns the input as
    ``float32``. Values stay in the input's range.
    """
    check_temporal_filter(frames)
    check_min_similarity(min_similarity)
    arr = np.asarray(probs, dtype=np.float32)
    n = arr.shape[0]
    if frames == 1 or n == 1:
        return arr
    if min_similarity <= 0.0:
        return np.asarray(uniform_filter1d(arr, size=frames, axis=0, mode="nearest"), dtype=np.float32)
    flat = arr.reshape(n, -1)
    acc = arr.copy()
    count = np.ones(n, dtype=np.float32)
    frame_ids = np.arange(n)
    energy = np.einsum("ij,ij->i", flat, flat)  # once for every neighbour offset
    for offset in (o for k in range(1, frames // 2 + 1) for o in (k, -k)):
        neighbour = np.clip(frame_ids + offset, 0, n - 1)
        keep = map_similarity(flat, neighbour, energy) >= min_similarity
        for t in np.flatnonzero(keep):
            acc[t] += arr[neighbour[t]]
        count += keep
    return acc / count.reshape(-1, *([1] * (arr.ndim - 1)))
