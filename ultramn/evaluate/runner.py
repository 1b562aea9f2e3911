"""``ultramn evaluate``: score a checkpoint on a dataset split, at each clip's original resolution.

Per frame: plane prediction, Dice, IoU, HD95, ASSD (mm with a known pixel spacing, px
otherwise), CSA error of the mask (every marked pixel) and of the CSA the gateway reports
(:func:`ultramn.measure.shape.reported_area`: the largest region), and whether the nerve was
missed or falsely detected as the gateway reports it (``case_reported``, :data:`DETECTION_BASIS`;
``detection`` in ``metrics.json``: counts and rates with their denominators). HD95 and ASSD are
undefined on frames where exactly one mask is empty: ``hd95_n_frames`` (and
``hd95_{mm,px}_n_frames``) says how many frames their figures cover. Per clip: clip plane,
temporal stability, and in transverse clips the excursion of the predicted against the
annotated nerve, against the probe and against the tissue (:mod:`ultramn.evaluate.excursion`).
Aggregates stratified by plane and quality grade, with 95 % bootstrap intervals that resample
participants (none with fewer than two participants). Values in mm and in px are never averaged together:
strata and temporal stability are computed per unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from ultramn.contract import PLANE_VIEWS, PLANES
from ultramn.data.clipio import ClipFileError, check_clip_files, read_clip
from ultramn.data.manifest import MANIFEST_NAME, ClipRecord, ManifestError, read_manifest
from ultramn.errors import out_path_problem
from ultramn.evaluate.bootstrap import bootstrap_ci, bootstrap_indices
from ultramn.evaluate.excursion import EXCURSION_COLUMNS, clip_excursions, excursion_summary
from ultramn.evaluate.metrics import (
    CASES,
    case_of,
    csa_series,
    detection_counts,
    frame_segmentation_metrics,
    mean_abs_delta,
    plane_metrics,
    stratify,
)
from ultramn.evaluate.predict import ClipPrediction
from ultramn.jsonio import write_json
from ultramn.measure.clip import clip_plane, frame_planes
from ultramn.measure.shape import DEFAULT_MEASURE_CONFIG, reported_area
from ultramn.measure.spacing import pixel_spacing_problem

#: Split names ``ultramn evaluate --split`` accepts.
SPLIT_CHOICES = ("train", "val", "test", "all")

Predictor = Callable[[npt.NDArray[np.uint8]], ClipPrediction]

SEG_METRICS = ("dice", "iou", "hd95", "assd", "csa_abs_error", "csa_rel_error", "csa_reported_abs_error")

#: a participant bootstrap needs at least this many participants to give an interval
MIN_BOOTSTRAP_PARTICIPANTS = 2

#: how ``metrics.json``'s ``detection`` (and ``frames.csv``'s ``case_reported``) judges a frame
DETECTION_BASIS = (
    f"prediction: a nerve where the gateway reports one (largest region of at least {DEFAULT_MEASURE_CONFIG.min_area_px} px,"
    " ultramn.measure.shape.reported_area, as for csa_reported_*); truth: a nerve where any pixel is annotated"
)

#: longest side (px) of the frame kept per clip for the overlay figure (display only)
OVERLAY_MAX_SIDE = 512

#: (frame ``[H,W]``, ground-truth mask ``[H,W]``, predicted mask ``[H,W]``) of one clip's drawn frame
Example = tuple[npt.NDArray[np.uint8], npt.NDArray[Any], npt.NDArray[Any]]


@dataclass
class EvaluationData:
    """Everything an evaluation produced, before it is written out."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    #: clip_id -> the one frame drawn in the overlay figure, with its masks (:func:`overlay_example`)
    examples: dict[str, Example] = field(default_factory=dict)


def overlay_example(
    frames: npt.NDArray[np.uint8], gt: npt.NDArray[np.uint8], pred: ClipPrediction, max_side: int = OVERLAY_MAX_SIDE
) -> Example:
    """A clip's middle frame and its two masks, strided down to ``max_side`` px: what the overlay figure draws.

    Copies, so the clip's arrays can be freed: the memory kept per clip is one small frame.
    """
    i = frames.shape[0] // 2
    step = max(1, math.ceil(max(frames.shape[1:3]) / max_side))
    cut = (i, slice(None, None, step), slice(None, None, step))
    return frames[cut].copy(), gt[cut] > 0, pred.mask_probs[cut] >= 0.5


def check_out_dir(out_dir: Path, root: Path) -> None:
    """Check that the evaluation will be able to write ``out_dir``, without creating it.

    ``ValueError`` naming ``out_dir`` when it is a file, lies under a file, cannot be written
    (its nearest existing folder takes no file), or is the dataset folder ``root`` itself (the
    report's files would land among the dataset's). The folder is made only when the results
    are written, so a run that fails leaves nothing behind.
    """
    problem = out_path_problem(out_dir, folder=True)
    if problem is not None:
        raise ValueError(f"--out {out_dir}: {problem}")
    if out_dir.resolve() == root.resolve():
        raise ValueError(f"--out {out_dir} is the dataset folder; give the evaluation a folder of its own")


def _splits_found(records: Sequence[ClipRecord]) -> str:
    """`` (the manifest has train: 12, unassigned: 3; ...)``: the splits there are, for a split that came up empty."""
    if not records:
        return " (the manifest lists no clips)"
    counts: dict[str, int] = {}
    for r in records:
        counts[r.split or "unassigned"] = counts.get(r.split or "unassigned", 0) + 1
    found = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    return f" (the manifest has {found}; --split all takes every clip, ultramn split assigns splits)"


def select_records(records: Sequence[ClipRecord], split: str) -> list[ClipRecord]:
    """The records of ``split`` (``all`` = every record)."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    return [r for r in records if split == "all" or r.split == split]


def score_clip(
    record: ClipRecord, gt: npt.NDArray[np.uint8], pred: ClipPrediction, frames: npt.NDArray[np.uint8] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frame rows and the clip row for one clip (masks ``uint8 [N,H,W]`` at original resolution).

    ``frames``: the clip's images, for the excursion columns of a transverse clip
    (:mod:`ultramn.evaluate.excursion`; ``nan`` without them)."""
    spacing = record.pixel_spacing_mm
    units = "mm" if spacing else "px"
    pred_masks = pred.masks()
    planes_pred = frame_planes(pred.plane_probs)
    rows: list[dict[str, Any]] = []
    for i in range(gt.shape[0]):
        m = frame_segmentation_metrics(pred_masks[i], gt[i], spacing)
        reported = reported_area(pred_masks[i], spacing)  # the gateway's CSA: largest region, 0 below the nerve threshold
        rows.append(
            {
                "clip_id": record.clip_id,
                "participant_id": record.participant_id,
                "plane": record.plane or None,
                "quality": record.quality or None,
                "frame": i,
                "units": units,
                "plane_pred": planes_pred[i],
                **m.to_dict(),
                "csa_reported": reported,
                "csa_reported_abs_error": abs(reported - m.csa_gt),
                # the frame's case with the prediction judged as the gateway reports it (see DETECTION_BASIS)
                "case_reported": case_of(reported > 0, m.csa_gt > 0),
            }
        )
    csa_pred, csa_gt = csa_series(pred_masks, spacing), csa_series(gt, spacing)
    plane, conf, _ = clip_plane(pred.plane_probs)
    stab_pred, stab_gt = mean_abs_delta(csa_pred), mean_abs_delta(csa_gt)
    clip_row: dict[str, Any] = {
        "clip_id": record.clip_id,
        "participant_id": record.participant_id,
        "plane": record.plane or None,
        "quality": record.quality or None,
        "units": units,
        "n_frames": int(gt.shape[0]),
        "plane_pred": plane,
        "plane_confidence": conf,
        "dice_mean": float(np.mean([r["dice"] for r in rows])),
        "stability_pred": stab_pred,
        "stability_gt": stab_gt,
        "stability_error": abs(stab_pred - stab_gt) if gt.shape[0] > 1 else math.nan,
        **(
            clip_excursions(record.plane, frames, gt, pred_masks, record.fps, spacing)
            if frames is not None
            else dict.fromkeys(EXCURSION_COLUMNS, math.nan)
        ),
    }
    return rows, clip_row


def check_records(root: Path, records: Sequence[ClipRecord], show: int = 5) -> None:
    """Refuse, before any clip is scored, records whose pixel spacing is not a plausible size
    or frame rate is not a positive number (:class:`~ultramn.data.manifest.ManifestError` naming
    the manifest and the clips) or whose clip file is missing or not a clip NPZ
    (:class:`~ultramn.data.clipio.ClipFileError`)."""
    bad = [f"{r.clip_id} ({problem})" for r in records if (problem := _spacing_problem(r.pixel_spacing_mm))]
    if bad:
        more = f" and {len(bad) - show} more" if len(bad) > show else ""
        raise ManifestError(
            f"{root / MANIFEST_NAME}: pixel_spacing_mm of {len(bad)} clip(s) is not usable (leave it empty when unknown):"
            f" {'; '.join(bad[:show])}{more}"
        )
    # the measurements refuse such a rate only when they reach the clip, after the clips before it were scored
    bad = [f"{r.clip_id} ({r.fps:g})" for r in records if r.fps is not None and not (math.isfinite(r.fps) and r.fps > 0)]
    if bad:
        more = f" and {len(bad) - show} more" if len(bad) > show else ""
        raise ManifestError(
            f"{root / MANIFEST_NAME}: fps of {len(bad)} clip(s) is not a positive number of frames per second"
            f" (leave it empty when unknown): {'; '.join(bad[:show])}{more}"
        )
    check_clip_files(root / r.file for r in records)


def _spacing_problem(spacing: float | None) -> str | None:
    return None if spacing is None else pixel_spacing_problem(spacing)


def run_predictions(
    root: Path, records: Sequence[ClipRecord], predictor: Predictor, keep_examples: int = 200, progress: bool = True
) -> EvaluationData:
    """Predict and score every clip of ``records`` (clip files under ``root``).

    A clip file that cannot be read raises :class:`~ultramn.data.clipio.ClipFileError`
    naming the clip and how far the evaluation got.
    """
    data = EvaluationData()
    for k, rec in enumerate(tqdm(records, desc="evaluating", unit="clip", disable=not progress)):
        try:
            clip = read_clip(root / rec.file)
        except ClipFileError as exc:
            raise ClipFileError(f"evaluation stopped at clip {k + 1} of {len(records)} ({rec.clip_id}): {exc}") from exc
        pred = predictor(clip.frames)
        rows, clip_row = score_clip(rec, clip.masks, pred, clip.frames)
        data.frames.extend(rows)
        data.clips.append(clip_row)
        if len(data.examples) < keep_examples:
            data.examples[rec.clip_id] = overlay_example(clip.frames, clip.masks, pred)
    return data


def _finite(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def too_few_participants(n_participants: int) -> str:
    """``"1 participant (a participant bootstrap needs 2)"``: why there is no interval."""
    plural = "s" if n_participants != 1 else ""
    return f"{n_participants} participant{plural} (a participant bootstrap needs {MIN_BOOTSTRAP_PARTICIPANTS})"


def _interval(estimate: float, n_participants: int, bounds: tuple[float, float] | None) -> dict[str, Any]:
    """An interval dict; ``low``/``high`` ``None`` (and a ``note``) with too few participants."""
    if bounds is None:
        return {
            "estimate": estimate,
            "low": None,
            "high": None,
            "n_participants": n_participants,
            "note": f"no interval: {too_few_participants(n_participants)}",
        }
    return {"estimate": estimate, "low": bounds[0], "high": bounds[1], "n_participants": n_participants}


def _ci(values: Sequence[Any], clusters: Sequence[Any], statistic: str = "mean", n_boot: int = 1000) -> dict[str, Any] | None:
    """Participant-bootstrap interval of a statistic of the finite ``values``; ``None`` when none is finite."""
    vals = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    finite = np.isfinite(vals)
    if not finite.any():
        return None
    n_participants = len({c for c, ok in zip(clusters, finite, strict=True) if ok})
    if n_participants < MIN_BOOTSTRAP_PARTICIPANTS:
        estimate = float(np.median(vals[finite]) if statistic == "median" else np.mean(vals[finite]))
        return _interval(estimate, n_participants, None)
    r = bootstrap_ci(vals, list(clusters), statistic=statistic, n_boot=n_boot)  # type: ignore[arg-type]
    return _interval(r.estimate, r.n_clusters, (r.low, r.high))


def _unit_rows(rows: list[dict[str, Any]], units: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["units"] == units]


def stratify_by_units(rows: list[dict[str, Any]], by: str, metrics: Sequence[str], include_all: bool = True) -> list[dict[str, Any]]:
    """:func:`stratify` separately for the rows in mm and in px (mm first), each row tagged ``units``.

    Rows without a pixel spacing (px) are never averaged with rows in mm.
    """
    out: list[dict[str, Any]] = []
    for units in ("mm", "px"):
        group = _unit_rows(rows, units)
        if group:
            out += [{**r, "units": units} for r in stratify(group, by, metrics, include_all=include_all)]
    return out


def _stability_block(clips: list[dict[str, Any]], units: str, n_boot: int) -> dict[str, Any]:
    """Temporal stability of clips (> 1 frame) that share one unit."""
    return {
        "units": f"{units}2",
        "n_clips": len(clips),
        "pred_mean_abs_delta_csa": float(np.mean([c["stability_pred"] for c in clips])),
        "gt_mean_abs_delta_csa": float(np.mean([c["stability_gt"] for c in clips])),
        "abs_difference_mean": float(np.mean([c["stability_error"] for c in clips])),
        "abs_difference_ci": _ci([c["stability_error"] for c in clips], [c["participant_id"] for c in clips], n_boot=n_boot),
        **stability_strata(clips, n_boot),
    }


def summarize(data: EvaluationData, n_boot: int = 1000) -> dict[str, Any]:
    """The ``metrics.json`` content (see docs/model-card.md for the keys)."""
    frames, clips = data.frames, data.clips
    if not frames:
        raise ValueError("nothing was evaluated")
    participants = [r["participant_id"] for r in frames]
    n_participants = len(set(participants))
    out: dict[str, Any] = {
        "n_clips": len(clips),
        "n_frames": len(frames),
        "n_participants": n_participants,
        # what the *_ci entries are; with one participant they have no low/high
        "intervals": "95 % participant bootstrap"
        if n_participants >= MIN_BOOTSTRAP_PARTICIPANTS
        else f"none: {too_few_participants(n_participants)}",
    }
    # planes (per frame and per clip); null when the data has no plane labels
    labelled = [r for r in frames if r["plane"]]
    if labelled:
        pm = plane_metrics([r["plane"] for r in labelled], [r["plane_pred"] for r in labelled], PLANES)
        truth = np.array([r["plane"] for r in labelled])
        guess = np.array([r["plane_pred"] for r in labelled])
        lab_participants = [r["participant_id"] for r in labelled]
        n_lab = len(set(lab_participants))
        if n_lab >= MIN_BOOTSTRAP_PARTICIPANTS:
            acc = bootstrap_indices(lab_participants, lambda idx: float(np.mean(truth[idx] == guess[idx])), n_boot=n_boot)
            acc_ci = _interval(acc.estimate, n_lab, (acc.low, acc.high))
        else:
            acc_ci = _interval(float(np.mean(truth == guess)), n_lab, None)
        clip_lab = [c for c in clips if c["plane"]]
        out.update(
            plane_accuracy=pm.accuracy,
            plane_accuracy_ci=acc_ci,
            plane_macro_f1=pm.macro_f1,
            plane_recall=pm.recall,
            plane_confusion={"labels": list(PLANES), "rows_true": [list(r) for r in pm.confusion]},
            plane_accuracy_clip=float(np.mean([c["plane"] == c["plane_pred"] for c in clip_lab])),
        )
    else:
        out.update(plane_accuracy=None, plane_macro_f1=None, plane_recall=None, plane_confusion=None, plane_accuracy_clip=None)

    out["dice_mean"] = float(np.mean([r["dice"] for r in frames]))
    out["dice_mean_ci"] = _ci([r["dice"] for r in frames], participants, n_boot=n_boot)
    out["iou_mean"] = float(np.mean([r["iou"] for r in frames]))
    out["cases"] = {c: sum(1 for r in frames if r["case"] == c) for c in CASES}
    # HD95/ASSD: defined on frames with a nerve in both masks or in neither (0), not on those empty in one
    out["hd95_n_frames"] = int(_finite([r["hd95"] for r in frames]).size)
    out["n_frames_px"] = len(_unit_rows(frames, "px"))
    out["detection"] = {"basis": DETECTION_BASIS, **detection_counts(r["case_reported"] for r in frames)}
    for units, area in (("mm", "mm2"), ("px", "px2")):
        rows = _unit_rows(frames, units)
        keys = {
            f"hd95_{units}_mean": ("hd95", "mean"),
            f"hd95_{units}_median": ("hd95", "median"),
            f"assd_{units}_mean": ("assd", "mean"),
            f"csa_abs_error_{area}_median": ("csa_abs_error", "median"),
            f"csa_abs_error_{area}_mean": ("csa_abs_error", "mean"),
            f"csa_reported_abs_error_{area}_median": ("csa_reported_abs_error", "median"),
        }
        for key, (metric, stat) in keys.items():
            vals = _finite([r[metric] for r in rows])
            out[key] = (float(np.median(vals)) if stat == "median" else float(np.mean(vals))) if vals.size else None
        # the frames behind hd95_{units}_* and assd_{units}_mean (ASSD is defined on the same frames)
        out[f"hd95_{units}_n_frames"] = int(_finite([r["hd95"] for r in rows]).size)
        for metric in ("csa_abs_error", "csa_reported_abs_error"):
            out[f"{metric}_{area}_median_ci"] = (
                _ci([r[metric] for r in rows], [r["participant_id"] for r in rows], "median", n_boot) if rows else None
            )
        out[f"hd95_{units}_mean_ci"] = _ci([r["hd95"] for r in rows], [r["participant_id"] for r in rows], "mean", n_boot) if rows else None
    rel = _finite([r["csa_rel_error"] for r in frames])
    out["csa_rel_error_median"] = float(np.median(rel)) if rel.size else None
    # temporal stability per unit: the clips in mm (if any), and those in px apart
    multi_mm = [c for c in clips if c["n_frames"] > 1 and c["units"] == "mm"]
    multi_px = [c for c in clips if c["n_frames"] > 1 and c["units"] != "mm"]
    main, main_units = (multi_mm, "mm") if multi_mm else (multi_px, "px")
    out["temporal_stability"] = _stability_block(main, main_units, n_boot) if main else None
    out["temporal_stability_px"] = _stability_block(multi_px, "px", n_boot) if multi_mm and multi_px else None
    # excursion of transverse clips (nerve centroid's largest distance from its first position), in the main unit
    out["excursion"] = excursion_summary(main, lambda values, who: _ci(values, who, "median", n_boot))
    strat_metrics = list(SEG_METRICS)
    out["by_plane"] = with_detection(stratify_by_units(frames, "plane", strat_metrics), frames, "plane") if labelled else None
    has_quality = any(r["quality"] for r in frames)
    out["by_quality"] = with_detection(stratify_by_units(frames, "quality", strat_metrics), frames, "quality") if has_quality else None
    return out


def with_detection(rows: list[dict[str, Any]], frames: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Stratum rows of :func:`stratify_by_units`, each given the ``detection`` figures
    (:func:`~ultramn.evaluate.metrics.detection_counts` of ``case_reported``) of its frames:
    those of its unit whose ``key`` matches (all of them in the ``"all"`` row)."""
    for row in rows:
        group = [f for f in _unit_rows(frames, row["units"]) if row[key] == "all" or f[key] == row[key]]
        row["detection"] = detection_counts(f["case_reported"] for f in group)
    return rows


#: the per-clip stability columns stratified in ``metrics.json``
STABILITY_METRICS = ("stability_pred", "stability_gt", "stability_error")


def stability_strata(clips: list[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    """Temporal stability by plane, by view and by quality grade (clip rows with > 1 frame).

    ``by_view`` splits transverse planes (where the mask area is the nerve's CSA) from
    longitudinal ones (where it is the area of a band) and adds a participant-bootstrap
    interval of the mean absolute difference per view. ``None`` where the data has no
    plane (or quality) labels.
    """
    labelled = [{**c, "view": PLANE_VIEWS.get(c["plane"] or "")} for c in clips if c["plane"]]
    by_view = None
    if labelled:
        by_view = stratify(labelled, "view", STABILITY_METRICS, include_all=False)
        for row in by_view:
            group = [c for c in labelled if c["view"] == row["view"]]
            row["stability_error_ci"] = _ci([c["stability_error"] for c in group], [c["participant_id"] for c in group], n_boot=n_boot)
    return {
        "by_plane": stratify(labelled, "plane", STABILITY_METRICS, include_all=False) if labelled else None,
        "by_view": by_view,
        "by_quality": stratify(clips, "quality", STABILITY_METRICS, include_all=False) if any(c["quality"] for c in clips) else None,
    }


def evaluate_dataset(
    root: Path,
    split: str,
    predictor: Predictor,
    out_dir: Path,
    *,
    meta: dict[str, Any] | None = None,
    n_boot: int = 1000,
    max_clips: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate, then write ``metrics.json``, ``frames.csv``, ``clips.csv``, ``report.md`` and figures."""
    from ultramn.evaluate.report import write_report

    everything = read_manifest(root)
    records = select_records(everything, split)
    if max_clips is not None:
        records = records[:max_clips]
    if not records:
        raise ValueError(f"{root}: no clips in split {split!r}{_splits_found(everything)}")
    check_out_dir(out_dir, root)
    check_records(root, records)
    try:
        data = run_predictions(root, records, predictor, progress=progress)
    except ClipFileError as exc:
        raise ClipFileError(f"{exc}; nothing was written to {out_dir}") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**(meta or {}), "data": str(root), "split": split, **summarize(data, n_boot=n_boot)}
    write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir, metrics, data)
    return metrics
