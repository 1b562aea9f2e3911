"""Measurements from nerve masks (pure numpy/scipy; no torch, no web framework).

Per frame: :func:`measure_frame` -> :class:`FrameMeasurement` (CSA, centroid, bbox,
perimeter, circularity, flattening, contour). Per clip: :func:`summarize_clip` /
:func:`measure_clip` -> :class:`ClipMeasurement` (plane and timeline, CSA statistics,
nerve excursion).
"""

from ultramn.measure.clip import (
    ClipConfig,
    ClipMeasurement,
    CsaStats,
    Excursion,
    PlaneRun,
    clip_plane,
    csa_stats,
    excursion,
    frame_planes,
    measure_clip,
    plane_timeline,
    summarize_clip,
)
from ultramn.measure.shape import FrameMeasurement, MeasureConfig, measure_frame, measure_frames
from ultramn.measure.spacing import Spacing, normalize_spacing

__all__ = [
    "ClipConfig",
    "ClipMeasurement",
    "CsaStats",
    "Excursion",
    "FrameMeasurement",
    "MeasureConfig",
    "PlaneRun",
    "Spacing",
    "clip_plane",
    "csa_stats",
    "excursion",
    "frame_planes",
    "measure_clip",
    "measure_frame",
    "measure_frames",
    "normalize_spacing",
    "plane_timeline",
    "summarize_clip",
]
