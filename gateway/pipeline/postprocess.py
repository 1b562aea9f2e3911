"""Stage ``postprocess``: masks back to the original frame geometry, measurements, result JSON.

Per frame the stitched probabilities ``[H,W]`` (model geometry) are resized to the ROI's
size (bilinear), thresholded and written into an all-background frame of the original size
(:func:`ultramn.preprocess.threshold_resized`): ``ctx.masks`` ``uint8 [N,H0,W0]``, with no
full-size float array on the way (memory: ``bench/bench_memory.py``).
Measurements are taken inside the ROI and shifted by its offset, which equals measuring
the full frame (the mask is empty outside the ROI) at a fraction of the cost. A transverse
clip's ROI frames are also tracked (:func:`ultramn.measure.tissue_motion.track_tissue`) so that a
transverse clip's excursion can be given against the tissue, not only against the probe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.pipeline.context import ClipContext
from ultramn.contract import PLANE_VIEWS, PLANES
from ultramn.measure import FrameMeasurement, MeasureConfig, clip_plane, measure_frames, summarize_clip
from ultramn.measure.spacing import normalize_spacing
from ultramn.measure.tissue_motion import TissueTrack, track_tissue
from ultramn.preprocess import threshold_resized


@dataclass(frozen=True)
class PostprocessConfig:
    """Threshold of the nerve probability, measurement options, rounding of floats."""

    threshold: float = 0.5
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)
    decimals: int = 4
    #: a transverse clip whose image content moved at least this far (mm; px without a spacing) gets a warning
    probe_motion_warn_mm: float = 1.0
    probe_motion_warn_px: float = 10.0
    #: follow the image content (excursion against the tissue, regions off the nerve's track); the
    #: live stream turns it off: it reports frames, not a clip's excursion, and it is a third of its time
    track_tissue: bool = True


def _shift(m: FrameMeasurement, dx: int, dy: int, spacing: tuple[float, float] | None) -> FrameMeasurement:
    """``m`` measured in a crop at offset ``(dx, dy)`` -> full-frame coordinates."""
    if not m.present or (dx == 0 and dy == 0):
        return m
    assert m.centroid_px is not None and m.bbox_px is not None
    cx, cy = m.centroid_px[0] + dx, m.centroid_px[1] + dy
    x0, y0, x1, y1 = m.bbox_px
    return dataclasses.replace(
        m,
        centroid_px=(cx, cy),
        centroid_mm=(cx * spacing[1], cy * spacing[0]) if spacing else None,
        bbox_px=(x0 + dx, y0 + dy, x1 + dx, y1 + dy),
        contour_px=tuple((round(x + dx, 2), round(y + dy, 2)) for x, y in m.contour_px) if m.contour_px else m.contour_px,
    )


def _r(value: Any, decimals: int) -> Any:
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, list | tuple):
        return [_r(v, decimals) for v in value]
    if isinstance(value, dict):
        return {k: _r(v, decimals) for k, v in value.items()}
    return value


def spacing_of(ctx: ClipContext) -> tuple[tuple[float, float] | None, str | None]:
    """``((dy, dx) mm/px, source)``: the request's value wins over the file's."""
    if ctx.pixel_spacing_mm is not None:
        return normalize_spacing(ctx.pixel_spacing_mm), "request"
    clip = ctx.require_clip()
    if clip.pixel_spacing_xy_mm is not None:
        sx, sy = clip.pixel_spacing_xy_mm
        return normalize_spacing((sy, sx)), "file"
    if clip.pixel_spacing_mm is not None:
        return normalize_spacing(clip.pixel_spacing_mm), "file"
    return None, None


def frame_dict(i: int, m: FrameMeasurement, probs: np.ndarray, off_track: bool = False) -> dict[str, Any]:
    """One frame's JSON (see docs/api.md, "Result"); ``off_track``: the clip left this frame's region
    out of csa and excursion as off the nerve's track against the tissue."""
    k = int(np.argmax(probs))
    return {
        "index": i,
        "plane_probs": {p: float(v) for p, v in zip(PLANES, probs, strict=True)},
        "plane": PLANES[k],
        "confidence": float(probs[k]),
        "nerve_present": m.present,
        "csa_px": m.area_px,
        "csa_mm2": m.area_mm2,
        "centroid": list(m.centroid_px) if m.centroid_px else None,
        "centroid_mm": list(m.centroid_mm) if m.centroid_mm else None,
        "bbox": list(m.bbox_px) if m.bbox_px else None,
        "at_side": m.at_side,
        "off_track": off_track,
        "perimeter_px": m.perimeter_px,
        "perimeter_mm": m.perimeter_mm,
        "circularity": m.circularity,
        "flattening_ratio": m.flattening_ratio,
        "contour": [list(p) for p in m.contour_px] if m.contour_px else None,
    }


def _tissue_track(frames: np.ndarray, plane_probs: np.ndarray) -> TissueTrack | None:
    """The image content's track over the ROI's frames ``[N,h,w] uint8``; ``None`` for a still and
    for a clip whose plane is longitudinal, where the clip summary does not use it."""
    plane, _, _ = clip_plane(plane_probs)
    if frames.shape[0] < 2 or PLANE_VIEWS.get(plane) != "transverse":
        return None
    return track_tissue(frames)


def probe_motion_warning(exc: dict[str, Any] | None, min_shift_mm: float, min_shift_px: float) -> list[str]:
    """A note when the image content moved in a transverse clip (``excursion.tissue_shift_max``
    at least ``min_shift_mm``, or ``min_shift_px`` without a spacing): the probe slid or tilted,
    and the plain excursion figures include that motion."""
    shift = (exc or {}).get("tissue_shift_max")
    if exc is None or shift is None or shift < (min_shift_mm if exc["unit"] == "mm" else min_shift_px):
        return []
    return [
        f"the image content moved up to {shift:.1f} {exc['unit']} during the clip (the probe slid or tilted): excursion is"
        " relative to the probe; excursion.relative_to_tissue follows the nerve against the tissue around it"
    ]


def off_track_warning(n_off_track: int) -> list[str]:
    """A note when frames were left out of csa and excursion as off the nerve's track against the tissue."""
    if not n_off_track:
        return []
    return [
        f"{n_off_track} frame(s) show a region away from the nerve's track against the tissue (off_track): another"
        " structure taken for the nerve, so csa and excursion leave them out"
    ]


def view_warnings(
    plane: str | None, has_area: bool, other_view_frames: int = 0, at_side_frames: int = 0, partial: bool = False
) -> list[str]:
    """Notes on what ``csa`` covers: a longitudinal clip plane's mask area is not a
    cross-sectional area; frames of the other view, and transverse frames whose nerve is cut
    by the image's side, were left out of it; or every frame's nerve was cut."""
    notes = []
    if has_area and PLANE_VIEWS.get(plane or "") == "longitudinal":
        notes.append(
            f"clip plane {plane} is a longitudinal view: csa is the area of the nerve's band in the image,"
            " not its cross-sectional area (measure CSA in a transverse view, TW or TF)"
        )
    if other_view_frames and plane:
        view = PLANE_VIEWS.get(plane, "")
        other = "longitudinal" if view == "transverse" else "transverse"
        notes.append(
            f"{other_view_frames} frame(s) with a nerve are {other} views (see plane_timeline): csa covers only the"
            f" {view} frames of this {plane} clip"
        )
    if at_side_frames:
        notes.append(
            f"{at_side_frames} frame(s) show the nerve cut by the image's side (at_side): csa and excursion leave them out,"
            " as their area is a partial cross-section"
        )
    if partial:
        notes.append("the nerve touches the image's side in every frame where it was found: csa is of a partial cross-section")
    return notes


def run(ctx: ClipContext, config: PostprocessConfig) -> None:
    """Set ``ctx.masks`` and ``ctx.result`` (clip summary + per-frame list)."""
    clip = ctx.require_clip()
    if ctx.frame_mask_probs is None or ctx.frame_planes is None:
        raise RuntimeError("stitch must run before postprocess")
    n, h0, w0 = clip.frames.shape
    x0, y0, x1, y1 = ctx.roi or (0, 0, w0, h0)
    masks = np.zeros((n, h0, w0), dtype=np.uint8)
    crop_masks = threshold_resized(ctx.frame_mask_probs, config.threshold, out=masks[:, y0:y1, x0:x1])
    ctx.masks = masks

    spacing, spacing_source = spacing_of(ctx)
    frames = [_shift(m, x0, y0, spacing) for m in measure_frames(crop_masks, spacing, config.measure)]
    tissue = _tissue_track(clip.frames[:, y0:y1, x0:x1], ctx.frame_planes) if config.track_tissue else None
    summary = summarize_clip(frames, ctx.frame_planes, clip.fps, tissue=tissue, spacing=spacing)
    off_track = set(summary.off_track_frames)
    s = summary.to_dict()
    notes = clip.warnings_given_spacing(spacing_source == "request")  # the file's spacing notes are moot then
    ctx.result = _r(
        {
            "n_frames": n,
            "fps": clip.fps,
            "duration_s": s["duration_s"],
            "frame_size": {"width": w0, "height": h0},
            "format": clip.format,
            "pixel_spacing_mm": {"dy": spacing[0], "dx": spacing[1]} if spacing else None,
            "spacing_source": spacing_source,
            "roi": {"x0": x0, "y0": y0, "x1": x1, "y1": y1},
            "plane": s["plane"],
            "plane_confidence": s["plane_confidence"],
            "plane_probs_mean": s["plane_probs_mean"],
            "plane_timeline": s["timeline"],
            "nerve_fraction": s["nerve_fraction"],
            "csa": s["csa"],
            "excursion": s["excursion"],
            "warnings": [
                *notes,
                *view_warnings(
                    s["plane"],
                    s["csa"] is not None,
                    summary.csa_other_view_frames,
                    summary.csa.n_at_side if summary.csa else 0,
                    bool(summary.csa and summary.csa.partial),
                ),
                *probe_motion_warning(s["excursion"], config.probe_motion_warn_mm, config.probe_motion_warn_px),
                *off_track_warning(len(off_track)),
            ],
            "frames": [frame_dict(i, m, ctx.frame_planes[i], i in off_track) for i, m in enumerate(frames)],
        },
        config.decimals,
    )
