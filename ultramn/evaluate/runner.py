"""``ultramn evaluate``: score a checkpoint on a dataset split, at each clip's original resolution.

Per frame: plane prediction, Dice, IoU, HD95, ASSD (mm with a known pixel spacing, px
otherwise), CSA error. Per clip: clip plane, temporal stability. Aggregates stratified by
plane and quality grade, with 95 % bootstrap intervals that resample participants.
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
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import ClipRecord, read_manifest
from ultramn.evaluate.bootstrap import bootstrap_ci, bootstrap_indices
from ultramn.evaluate.metrics import (
    csa_series,
    frame_segmentation_metrics,
    mean_abs_delta,
    plane_metrics,
    stratify,
)
from ultramn.evaluate.predict import ClipPrediction
from ultramn.jsonio import write_json
from ultramn.measure.clip import clip_plane, frame_planes

#: Split names ``ultramn evaluate --split`` accepts.
SPLIT_CHOICES = ("train", "val", "test", "all")

Predictor = Callable[[npt.NDArray[np.uint8]], ClipPrediction]

SEG_METRICS = ("dice", "iou", "hd95", "assd", "csa_abs_error", "csa_rel_error")


@dataclass
class EvaluationData:
    """Everything an evaluation produced, before it is written out."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    #: clip_id -> (frames, gt masks, pred masks) kept for the overlay figures
    examples: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]] = field(default_factory=dict)


def select_records(records: Sequence[ClipRecord], split: str) -> list[ClipRecord]:
    """The records of ``split`` (``all`` = every record)."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    return [r for r in records if split == "all" or r.split == split]


def score_clip(record: ClipRecord, gt: npt.NDArray[np.uint8], pred: ClipPrediction) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frame rows and the clip row for one clip (masks ``uint8 [N,H,W]`` at original resolution)."""
    spacing = record.pixel_spacing_mm
    units = "mm" if spacing else "px"
    pred_masks = pred.masks()
    planes_pred = frame_planes(pred.plane_probs)
    rows: list[dict[str, Any]] = []
    for i in range(gt.shape[0]):
        m = frame_segmentation_metrics(pred_masks[i], gt[i], spacing)
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
    }
    return rows, clip_row


def run_predictions(
    root: Path, records: Sequence[ClipRecord], predictor: Predictor, keep_examples: int = 200, progress: bool = True
) -> EvaluationData:
    """Predict and score every clip of ``records`` (clip files under ``root``)."""
    data = EvaluationData()
    for rec in tqdm(records, desc="evaluating", unit="clip", disable=not progress):
        clip = read_clip(root / rec.file)
        pred = predictor(clip.frames)
        rows, clip_row = score_clip(rec, clip.masks, pred)
        data.frames.extend(rows)
        data.clips.append(clip_row)
        if len(data.examples) < keep_examples:
            data.examples[rec.clip_id] = (clip.frames, clip.masks, pred.masks())
    return data


def _finite(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _ci(values: Sequence[Any], clusters: Sequence[Any], statistic: str = "mean", n_boot: int = 1000) -> dict[str, Any] | None:
    vals = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if not np.isfinite(vals).any():
        return None
    r = bootstrap_ci(vals, list(clusters), statistic=statistic, n_boot=n_boot)  # type: ignore[arg-type]
    return {"estimate": r.estimate, "low": r.low, "high": r.high, "n_participants": r.n_clusters}


def _unit_rows(rows: list[dict[str, Any]], units: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["units"] == units]


def summarize(data: EvaluationData, n_boot: int = 1000) -> dict[str, Any]:
    """The ``metrics.json`` content (see docs/model-card.md for the keys)."""
    frames, clips = data.frames, data.clips
    if not frames:
        raise ValueError("nothing was evaluated")
    participants = [r["participant_id"] for r in frames]
    out: dict[str, Any] = {
        "n_clips": len(clips),
        "n_frames": len(frames),
        "n_participants": len(set(participants)),
    }
    # planes (per frame and per clip); null when the data has no plane labels
    labelled = [r for r in frames if r["plane"]]
    if labelled:
        pm = plane_metrics([r["plane"] for r in labelled], [r["plane_pred"] for r in labelled], PLANES)
        truth = np.array([r["plane"] for r in labelled])
        guess = np.array([r["plane_pred"] for r in labelled])
        acc_ci = bootstrap_indices(
            [r["participant_id"] for r in labelled], lambda idx: float(np.mean(truth[idx] == guess[idx])), n_boot=n_boot
        )
        clip_lab = [c for c in clips if c["plane"]]
        out.update(
            plane_accuracy=pm.accuracy,
            plane_accuracy_ci={"estimate": acc_ci.estimate, "low": acc_ci.low, "high": acc_ci.high},
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
    out["cases"] = {c: sum(1 for r in frames if r["case"] == c) for c in ("both_present", "both_empty", "pred_empty", "gt_empty")}
    for units, area in (("mm", "mm2"), ("px", "px2")):
        rows = _unit_rows(frames, units)
        keys = {
            f"hd95_{units}_mean": ("hd95", "mean"),
            f"hd95_{units}_median": ("hd95", "median"),
            f"assd_{units}_mean": ("assd", "mean"),
            f"csa_abs_error_{area}_median": ("csa_abs_error", "median"),
            f"csa_abs_error_{area}_mean": ("csa_abs_error", "mean"),
        }
        for key, (metric, stat) in keys.items():
            vals = _finite([r[metric] for r in rows])
            out[key] = (float(np.median(vals)) if stat == "median" else float(np.mean(vals))) if vals.size else None
        out[f"csa_abs_error_{area}_median_ci"] = (
            _ci([r["csa_abs_error"] for r in rows], [r["participant_id"] for r in rows], "median", n_boot) if rows else None
        )
        out[f"hd95_{units}_mean_ci"] = _ci([r["hd95"] for r in rows], [r["participant_id"] for r in rows], "mean", n_boot) if rows else None
    rel = _finite([r["csa_rel_error"] for r in frames])
    out["csa_rel_error_median"] = float(np.median(rel)) if rel.size else None
    multi = [c for c in clips if c["n_frames"] > 1]
    if multi:
        out["temporal_stability"] = {
            "units": "mm2" if all(c["units"] == "mm" for c in multi) else "mixed/px2",
            "pred_mean_abs_delta_csa": float(np.mean([c["stability_pred"] for c in multi])),
            "gt_mean_abs_delta_csa": float(np.mean([c["stability_gt"] for c in multi])),
            "abs_difference_mean": float(np.mean([c["stability_error"] for c in multi])),
            "abs_difference_ci": _ci([c["stability_error"] for c in multi], [c["participant_id"] for c in multi], n_boot=n_boot),
            **stability_strata(multi, n_boot),
        }
    else:
        out["temporal_stability"] = None
    strat_metrics = list(SEG_METRICS)
    out["by_plane"] = stratify(frames, "plane", strat_metrics) if labelled else None
    out["by_quality"] = stratify(frames, "quality", strat_metrics) if any(r["quality"] for r in frames) else None
    return out


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

    records = select_records(read_manifest(root), split)
    if max_clips is not None:
        records = records[:max_clips]
    if not records:
        raise ValueError(f"{root}: no clips in split {split!r}")
    data = run_predictions(root, records, predictor, progress=progress)
    metrics = {**(meta or {}), "data": str(root), "split": split, **summarize(data, n_boot=n_boot)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir, metrics, data)
    return metrics
