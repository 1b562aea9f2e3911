"""Per-clip summaries: plane timeline, clip plane, CSA statistics, nerve excursion.

Inputs: the clip's :class:`~ultramn.measure.shape.FrameMeasurement` list (one per frame,
``N``), optionally per-frame plane probabilities ``[N, n_planes]`` (order
:data:`ultramn.contract.PLANES`, e.g. from :func:`ultramn.windowing.stitch_planes`) and the
frame rate (frames/s).

Definitions:

- **frame plane**: argmax of that frame's plane probabilities.
- **plane timeline**: runs of consecutive frames with the same frame plane,
  ``{plane, start, end}`` with ``end`` *inclusive* (frame indices), plus ``start_s`` /
  ``end_s`` (seconds, ``end_s = (end + 1) / fps``) when the frame rate is known.
- **clip plane**: argmax of the *mean* plane probabilities over all frames; its
  **confidence** is that mean probability (so a clip that wavers between two planes gets a
  low confidence even when one wins every frame narrowly).
- **CSA statistics**: median, mean, min, max of the area over frames with a nerve whose
  own frame plane is of the clip plane's view (transverse TW/TF or longitudinal LW/LF; all
  frames with a nerve when there are no plane probabilities), in mm² when every such frame
  has a mm² area, else in px (``unit`` says which). ``n_other_view`` counts the frames with
  a nerve left out because their plane is of the other view (a probe turned mid-clip: a
  longitudinal band's area is no cross-sectional area). In a transverse clip, frames whose
  nerve touches the image's left or right side (``at_side``: cut by the edge, as when the
  probe slides off the nerve) are left out too, counted in ``n_at_side``; when every frame
  with a nerve is cut, they are all kept and ``partial`` is true. A longitudinal band runs
  across the image, so there the side is no cut.
- **excursion**: from the centroids of the frames the CSA statistics use (frames with a
  nerve whose own plane is of the clip plane's view, less those cut by the side; all frames
  with a nerve without plane probabilities), in mm when known, else px, optionally smoothed by a centred moving median
  of ``centroid_smoothing_frames`` frames: path length (sum of distances between
  consecutive such frames; other frames are skipped, the path joins across them), range in
  x and in y (max - min), the largest distance from the first position and from the mean
  position; the mean speed is the path length over the time between the first and the
  last such frame. These positions are in image coordinates, relative to the probe. Given a
  tissue track (:func:`ultramn.measure.tissue_motion.track_tissue`: how the image content
  moved, that is the probe's slide and tilt), a transverse clip's excursion also has
  ``tissue_shift_max`` (how far the content moved from the first tracked frame) and
  ``relative_to_tissue``: the same figures for the centroid less the content's displacement,
  the nerve's motion against the tissue around it. Longitudinal clips get neither: their
  content is dominated by tendons gliding along the image, not by the probe.
- **off track**: in a transverse clip with a reliable tissue track, frames whose region lies
  far from the nerve's track against the tissue (``off_track_diameters``; :func:`track_distances`)
  are another structure, a false detection, and are left out of the CSA and the excursion
  (``csa.n_off_track``, ``off_track_frames``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from ultramn.contract import PLANE_VIEWS, PLANES
from ultramn.measure.shape import DEFAULT_MEASURE_CONFIG, FrameMeasurement, MeasureConfig, _jsonable, measure_frames
from ultramn.measure.spacing import Spacing, normalize_spacing
from ultramn.measure.tissue_motion import TissueTrack

#: Default of :attr:`ClipConfig.off_track_diameters` (docs/benchmarks.md, "Regions off the nerve's track").
OFF_TRACK_DIAMETERS = 1.5
#: The off-track rule needs at least this many frames with a nerve to have a track.
OFF_TRACK_MIN_FRAMES = 3


@dataclass(frozen=True)
class ClipConfig:
    """Options of :func:`summarize_clip`.

    ``centroid_smoothing_frames``: window (frames, odd, 1 = off) of the moving median applied
    to the centroid track before the excursion figures; per-frame segmentation jitter
    otherwise adds to the path length.
    ``off_track_diameters``: in a transverse clip with a reliable tissue track, a frame whose
    region lies farther than this many nerve diameters from the track's median position
    against the tissue is another structure (a false detection), left out of the CSA and the
    excursion (0 = off); see :func:`track_distances`.
    """

    centroid_smoothing_frames: int = 1
    off_track_diameters: float = OFF_TRACK_DIAMETERS

    def __post_init__(self) -> None:
        if self.centroid_smoothing_frames < 1 or self.centroid_smoothing_frames % 2 == 0:
            raise ValueError("centroid_smoothing_frames must be an odd number >= 1")
        if not (math.isfinite(self.off_track_diameters) and self.off_track_diameters >= 0):
            raise ValueError("off_track_diameters must be a number >= 0")


DEFAULT_CLIP_CONFIG = ClipConfig()


@dataclass(frozen=True)
class PlaneRun:
    """Frames ``start..end`` (inclusive) all predicted as ``plane``; seconds when fps is known."""

    plane: str
    start: int
    end: int
    start_s: float | None = None
    end_s: float | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames in the run."""
        return self.end - self.start + 1


@dataclass(frozen=True)
class CsaStats:
    """CSA over the frames with a nerve in the clip's view; ``unit`` is ``"mm2"`` or ``"px"``;
    ``n_other_view``: frames with a nerve left out because their plane is of the other view;
    ``n_at_side``: transverse frames left out because the nerve is cut by the image's side;
    ``n_off_track``: transverse frames left out because their region is off the nerve's track
    against the tissue (:func:`track_distances`);
    ``partial``: every frame with a nerve was cut, so the figures are of partial sections."""

    unit: str
    median: float
    mean: float
    min: float
    max: float
    n_frames: int
    n_other_view: int = 0
    n_at_side: int = 0
    partial: bool = False
    n_off_track: int = 0


@dataclass(frozen=True)
class Excursion:
    """Centroid motion over the frames with a nerve in the clip's view; lengths in ``unit`` (``"mm"`` or ``"px"``)."""

    unit: str
    path_length: float
    range_x: float
    range_y: float
    max_from_first: float
    max_from_mean: float
    n_frames: int
    mean_speed_per_s: float | None = None
    #: transverse clips with a tissue track: the largest displacement of the image content
    #: (the probe's slide and tilt) from its place at the first tracked frame, over the tracked frames
    tissue_shift_max: float | None = None
    #: the same figures for the centroid less the tissue's displacement: the nerve against its surroundings
    relative_to_tissue: Excursion | None = None


@dataclass(frozen=True)
class ClipMeasurement:
    """Summary of one clip (see the module docstring for definitions).

    ``plane``/``plane_confidence``/``plane_probs_mean``/``timeline`` are ``None`` without
    plane probabilities; ``csa``/``excursion`` are ``None`` when no frame has a nerve, or
    when every such frame is of the other view (``csa_other_view_frames`` counts them).
    """

    n_frames: int
    fps: float | None
    duration_s: float | None
    nerve_fraction: float
    plane: str | None = None
    plane_confidence: float | None = None
    plane_probs_mean: dict[str, float] | None = None
    timeline: tuple[PlaneRun, ...] | None = None
    csa: CsaStats | None = None
    excursion: Excursion | None = None
    csa_other_view_frames: int = 0
    #: the frames ``csa`` and ``excursion`` use, and the frames left out as off the nerve's track
    csa_frames: tuple[int, ...] = ()
    off_track_frames: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (timeline as a list of ``{plane, start, end, start_s, end_s}``); non-finite
        floats, nested ones included, become ``None``."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def frame_planes(plane_probs: npt.ArrayLike, planes: Sequence[str] = PLANES) -> list[str]:
    """Per-frame plane labels (argmax) from probabilities ``[N, n_planes]``."""
    probs = _check_probs(plane_probs, planes)
    return [planes[i] for i in np.argmax(probs, axis=1)]


def plane_timeline(labels: Sequence[str], fps: float | None = None) -> list[PlaneRun]:
    """Runs of consecutive equal labels: ``["TW","TW","LW"] -> [TW 0..1, LW 2..2]``."""
    runs: list[PlaneRun] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            end = i - 1
            runs.append(
                PlaneRun(
                    plane=labels[start],
                    start=start,
                    end=end,
                    start_s=start / fps if fps else None,
                    end_s=(end + 1) / fps if fps else None,
                )
            )
            start = i
    return runs


def clip_plane(plane_probs: npt.ArrayLike, planes: Sequence[str] = PLANES) -> tuple[str, float, dict[str, float]]:
    """``(plane, confidence, mean probabilities)``: argmax of the per-frame mean probabilities."""
    probs = _check_probs(plane_probs, planes)
    mean = probs.mean(axis=0)
    k = int(np.argmax(mean))
    return planes[k], float(mean[k]), {p: float(v) for p, v in zip(planes, mean, strict=True)}


def _check_probs(plane_probs: npt.ArrayLike, planes: Sequence[str]) -> npt.NDArray[np.float64]:
    probs = np.asarray(plane_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(planes) or probs.shape[0] == 0:
        raise ValueError(f"plane probabilities must be [N>0, {len(planes)}], got {probs.shape}")
    if not np.isfinite(probs).all():
        # argmax takes a NaN for the largest value: the NaN's plane would win the frame and the clip
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        raise ValueError(f"plane probabilities must be finite; frames {bad[:5].tolist()} ({bad.size} in all) are not")
    return probs


def csa_stats(
    frames: Sequence[FrameMeasurement], n_other_view: int = 0, n_at_side: int = 0, partial: bool = False, n_off_track: int = 0
) -> CsaStats | None:
    """CSA statistics over the frames of ``frames`` with a nerve (mm² if all have it, else px);
    ``n_other_view``, ``n_at_side`` and ``partial`` are recorded as given (what the caller left out)."""
    present = [f for f in frames if f.present]
    if not present:
        return None
    if all(f.area_mm2 is not None for f in present):
        unit, values = "mm2", np.array([f.area_mm2 for f in present], dtype=np.float64)
    else:
        unit, values = "px", np.array([f.area_px for f in present], dtype=np.float64)
    return CsaStats(
        unit=unit,
        median=float(np.median(values)),
        mean=float(values.mean()),
        min=float(values.min()),
        max=float(values.max()),
        n_frames=len(values),
        n_other_view=n_other_view,
        n_at_side=n_at_side,
        partial=partial,
        n_off_track=n_off_track,
    )


def excursion(
    centroids: npt.ArrayLike,
    unit: str = "px",
    fps: float | None = None,
    smoothing_frames: int = 1,
    duration_frames: int | None = None,
) -> Excursion | None:
    """Excursion figures of a centroid track ``[M, 2]`` (x, y) in ``unit``; ``None`` if empty.

    ``mean_speed_per_s`` = path length / duration (``duration_frames / fps``: the frame
    intervals the track spans, default ``M - 1``), when ``fps`` is known and the track spans
    at least one interval.
    """
    pts = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return None
    if smoothing_frames > 1 and len(pts) > 1:
        pts = ndi.median_filter(pts, size=(smoothing_frames, 1), mode="nearest")
    steps = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
    path = float(steps.sum())
    n_dur = duration_frames if duration_frames is not None else len(pts) - 1
    return Excursion(
        unit=unit,
        path_length=path,
        range_x=float(np.ptp(pts[:, 0])),
        range_y=float(np.ptp(pts[:, 1])),
        max_from_first=float(np.hypot(*(pts - pts[0]).T).max()),
        max_from_mean=float(np.hypot(*(pts - pts.mean(axis=0)).T).max()),
        n_frames=len(pts),
        mean_speed_per_s=path / (n_dur / fps) if fps and n_dur > 0 else None,
    )


def _shifts_of(tissue: TissueTrack, n_frames: int) -> npt.NDArray[np.float64]:
    """The track's ``[N, 2]`` shifts; ``ValueError`` when it does not have one row per frame."""
    shifts = np.asarray(tissue.shifts_px, dtype=np.float64)
    if shifts.shape != (n_frames, 2):
        raise ValueError(f"a tissue track of {shifts.shape[0]} frames for {n_frames} frame measurements")
    return shifts


def track_distances(frames: Sequence[FrameMeasurement], tissue: TissueTrack, indices: Sequence[int] | None = None) -> dict[int, float]:
    """How far each frame's region lies from the nerve's track against the tissue, in nerve diameters.

    Over ``indices`` (default: every frame with a nerve): each region's centroid less the
    tissue's displacement (pixels), its distance from the median of those positions, divided
    by the median equivalent diameter (``sqrt(4 area / pi)``) of the regions. A nerve glides a
    few millimetres against its surroundings, about one diameter; a region several diameters
    away is another structure. Empty when the track is not reliable or there are fewer than
    :data:`OFF_TRACK_MIN_FRAMES` frames.
    """
    idx = [i for i in (indices if indices is not None else range(len(frames))) if frames[i].present]
    shifts = _shifts_of(tissue, len(frames))
    if not tissue.reliable or len(idx) < OFF_TRACK_MIN_FRAMES:
        return {}
    centroids = np.array([frames[i].centroid_px for i in idx], dtype=np.float64)
    relative = centroids - shifts[idx]
    diameter = float(np.median([math.sqrt(4 * frames[i].area_px / math.pi) for i in idx]))
    distance = np.hypot(*(relative - np.median(relative, axis=0)).T) / max(diameter, 1.0)
    return {i: float(d) for i, d in zip(idx, distance, strict=True)}


def _against_tissue(
    exc: Excursion,
    track: npt.NDArray[np.float64],
    frame_indices: Sequence[int],
    tissue: TissueTrack,
    unit: str,
    spacing: Spacing,
    fps: float | None,
    config: ClipConfig,
    span: int,
) -> Excursion:
    """``exc`` with ``tissue_shift_max`` and ``relative_to_tissue`` (unchanged when the track is unreliable)."""
    if not tissue.reliable:
        return exc
    shift = np.asarray(tissue.shifts_px, dtype=np.float64)[list(frame_indices)]
    if unit == "mm":
        sp = normalize_spacing(spacing)
        if sp is None:
            return exc
        shift = shift * np.array([sp[1], sp[0]])
    shift = shift - shift[0]
    relative = excursion(track - shift, unit, fps, config.centroid_smoothing_frames, duration_frames=span)
    return replace(exc, tissue_shift_max=float(np.hypot(*shift.T).max()), relative_to_tissue=relative)


def summarize_clip(
    frames: Sequence[FrameMeasurement],
    plane_probs: npt.ArrayLike | None = None,
    fps: float | None = None,
    planes: Sequence[str] = PLANES,
    config: ClipConfig = DEFAULT_CLIP_CONFIG,
    tissue: TissueTrack | None = None,
    spacing: Spacing = None,
) -> ClipMeasurement:
    """Clip summary from per-frame measurements and plane probabilities ``[N, n_planes]``.

    ``tissue``: the image content's track over the same ``N`` frames (pixels of the frames the
    masks were measured on), used for a transverse clip's tissue-relative excursion when it is
    reliable; ``spacing``: the pixel spacing the measurements used, for that track in mm.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("a clip needs at least one frame")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    if tissue is not None:
        _shifts_of(tissue, n)  # one row per frame, checked before anything uses it
    plane = conf = mean_probs = timeline = None
    in_view = [True] * n
    if plane_probs is not None:
        probs = _check_probs(plane_probs, planes)
        if probs.shape[0] != n:
            raise ValueError(f"{probs.shape[0]} plane predictions for {n} frames")
        plane, conf, mean_probs = clip_plane(probs, planes)
        labels = frame_planes(probs, planes)
        timeline = tuple(plane_timeline(labels, fps))
        view = PLANE_VIEWS.get(plane)
        in_view = [PLANE_VIEWS.get(label) == view for label in labels]

    present = [f for f in frames if f.present]
    # the centroid track, like the CSA, keeps only the frames of the clip plane's view: the
    # centroid of a longitudinal band is no position of the transverse section (and vice versa)
    in_view_nerve = [i for i, f in enumerate(frames) if f.present and in_view[i]]
    # a transverse nerve cut by the image's side is a partial section: out of the CSA and the
    # track, unless every frame is cut (then all are kept, and csa.partial says so)
    cut_side = plane is not None and PLANE_VIEWS.get(plane) == "transverse"
    whole = [i for i in in_view_nerve if not (cut_side and frames[i].at_side)]
    nerve_frames = whole or in_view_nerve
    n_at_side = len(in_view_nerve) - len(nerve_frames)
    partial = bool(in_view_nerve) and not whole
    off_track: list[int] = []
    if cut_side and tissue is not None and config.off_track_diameters > 0:
        far = {i for i, d in track_distances(frames, tissue, nerve_frames).items() if d > config.off_track_diameters}
        if len(far) < len(nerve_frames) / 2:  # the track is the majority's; without one, nothing is off it
            off_track = sorted(far)
            nerve_frames = [i for i in nerve_frames if i not in far]
    tracked = [frames[i] for i in nerve_frames]
    if tracked and all(f.centroid_mm is not None for f in tracked):
        unit, track = "mm", [f.centroid_mm for f in tracked]
    else:
        unit, track = "px", [f.centroid_px for f in tracked]
    exc = None
    if tracked:
        span = nerve_frames[-1] - nerve_frames[0]
        exc = excursion(np.array(track, dtype=np.float64), unit, fps, config.centroid_smoothing_frames, duration_frames=span)
        if tissue is not None and cut_side and exc is not None:
            exc = _against_tissue(exc, np.array(track, dtype=np.float64), nerve_frames, tissue, unit, spacing, fps, config, span)
    other_view = sum(1 for f, keep in zip(frames, in_view, strict=True) if f.present and not keep)
    csa = csa_stats(
        [frames[i] for i in nerve_frames], n_other_view=other_view, n_at_side=n_at_side, partial=partial, n_off_track=len(off_track)
    )
    return ClipMeasurement(
        n_frames=n,
        fps=fps,
        duration_s=n / fps if fps else None,
        nerve_fraction=len(present) / n,
        plane=plane,
        plane_confidence=conf,
        plane_probs_mean=mean_probs,
        timeline=timeline,
        csa=csa,
        excursion=exc,
        csa_other_view_frames=other_view,
        csa_frames=tuple(nerve_frames),
        off_track_frames=tuple(off_track),
    )


def measure_clip(
    masks: npt.ArrayLike,
    plane_probs: npt.ArrayLike | None = None,
    fps: float | None = None,
    spacing: Spacing = None,
    measure_config: MeasureConfig = DEFAULT_MEASURE_CONFIG,
    clip_config: ClipConfig = DEFAULT_CLIP_CONFIG,
    planes: Sequence[str] = PLANES,
) -> tuple[list[FrameMeasurement], ClipMeasurement]:
    """Measure every mask of ``[N, H, W]`` and summarise the clip: ``(frames, clip)``."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {arr.shape}")
    frames = measure_frames(arr, spacing, measure_config)
    return frames, summarize_clip(frames, plane_probs, fps, planes, clip_config)
