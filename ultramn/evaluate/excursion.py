"""Excursion of the predicted nerve against the annotated one, per transverse clip.

The gateway reports a clip's excursion as the nerve centroid's largest distance from its
first position (``excursion.max_from_first``, the figure ``summary.csv`` gives), against the
probe (image coordinates) and, in a transverse clip, against the tissue
(``excursion.relative_to_tissue``, with the image content tracked by
:func:`ultramn.measure.tissue_motion.track_tissue`). Both are computed here from the predicted
masks and from the annotated ones, with the same measurement code and the same tissue track
(from the clip's frames), over the frames the measurement code keeps for each. The clip's
annotated plane decides the view for both, so the difference is the masks'. Longitudinal
clips, stills, clips without a plane label and tracks that lose the content give ``nan``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.contract import PLANE_VIEWS, PLANES
from ultramn.measure.clip import Excursion, summarize_clip
from ultramn.measure.shape import measure_frames
from ultramn.measure.tissue_motion import TissueTrack, track_tissue

#: the per-clip columns :func:`clip_excursions` adds (mm with a spacing, else px)
EXCURSION_COLUMNS = (
    "excursion_pred",
    "excursion_gt",
    "excursion_error",
    "excursion_tissue_pred",
    "excursion_tissue_gt",
    "excursion_tissue_error",
)


def _excursion(
    masks: npt.NDArray[np.uint8], probs: npt.NDArray[np.float32], fps: float | None, spacing: float | None, track: TissueTrack
) -> Excursion | None:
    return summarize_clip(measure_frames(masks, spacing), probs, fps, tissue=track, spacing=spacing).excursion


def clip_excursions(
    plane: str | None,
    frames: npt.NDArray[np.uint8],
    gt: npt.NDArray[np.uint8],
    pred: npt.NDArray[np.uint8],
    fps: float | None,
    spacing: float | None,
) -> dict[str, float]:
    """:data:`EXCURSION_COLUMNS` of one clip (``[N,H,W]`` frames and masks at the clip's resolution)."""
    empty = dict.fromkeys(EXCURSION_COLUMNS, math.nan)
    if not plane or PLANE_VIEWS.get(plane) != "transverse" or frames.shape[0] < 2:
        return empty
    track = track_tissue(frames)
    probs = np.zeros((frames.shape[0], len(PLANES)), np.float32)
    probs[:, PLANES.index(plane)] = 1.0
    p, g = _excursion(pred, probs, fps, spacing, track), _excursion(gt, probs, fps, spacing, track)
    out = dict(empty)
    if p is not None and g is not None:
        out.update(excursion_pred=p.max_from_first, excursion_gt=g.max_from_first, excursion_error=abs(p.max_from_first - g.max_from_first))
        pt, gtt = p.relative_to_tissue, g.relative_to_tissue
        if pt is not None and gtt is not None:
            out.update(
                excursion_tissue_pred=pt.max_from_first,
                excursion_tissue_gt=gtt.max_from_first,
                excursion_tissue_error=abs(pt.max_from_first - gtt.max_from_first),
            )
    return out


def excursion_summary(clips: list[dict[str, Any]], ci: Any) -> dict[str, Any] | None:
    """``metrics.json``'s ``excursion`` block over clips of one unit with both excursions; ``None`` without any.

    ``ci(values, participants)``: the caller's participant-bootstrap interval of a median.
    """
    scored = [c for c in clips if np.isfinite(c.get("excursion_error", math.nan))]
    if not scored:
        return None
    out: dict[str, Any] = {"units": scored[0]["units"], "n_clips": len(scored)}
    for key, label in (("excursion", "image"), ("excursion_tissue", "tissue")):
        rows = [c for c in scored if np.isfinite(c[f"{key}_error"])]
        errs = [c[f"{key}_error"] for c in rows]
        out[label] = (
            {
                "n_clips": len(rows),
                "gt_median": float(np.median([c[f"{key}_gt"] for c in rows])),
                "abs_error_median": float(np.median(errs)),
                "abs_error_median_ci": ci(errs, [c["participant_id"] for c in rows]),
            }
            if rows
            else None
        )
    return out
