"""The evaluation report: ``report.md``, per-frame/per-clip CSV tables and PNG figures.

Figures: ``confusion.png`` (plane confusion matrix, when the data has plane labels),
``dice_by_quality.png`` (per-frame Dice box plot per image-quality grade, or per plane
when grades are missing, or of all frames when both are) and ``overlays.png`` (best /
median / worst clip by mean Dice, middle frame, ground truth green, prediction red).
Tables in mm and in px are kept apart: a stratum row carries its unit.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ultramn.contract import PLANES, QUALITY_GRADES

if TYPE_CHECKING:
    from ultramn.evaluate.runner import EvaluationData


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _count(n: Any, noun: str) -> str:
    """``1 clip``, ``3 clips``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ci_text(ci: dict[str, Any] | None, digits: int = 3) -> str:
    """``estimate [low, high]``; the estimate and why there is no interval when it has none."""
    if not ci:
        return "n/a"
    if ci.get("low") is None or ci.get("high") is None:
        n = ci.get("n_participants")
        why = f"n/a, {n} participant{'s' if n != 1 else ''}" if n is not None else "n/a"
        return f"{ci['estimate']:.{digits}f} [{why}]"
    return f"{ci['estimate']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


#: a unit's length and area labels
UNIT_LABELS = {"mm": ("mm", "mm²"), "px": ("px", "px²")}


def rate_text(count: Any, denominator: Any, rate: Any) -> str:
    """``3 of 120 (2.5 %)``; ``0 of 0 (n/a)`` when the denominator is 0; ``n/a`` without a count."""
    if count is None or denominator is None:
        return "n/a"
    return f"{count} of {denominator} ({'n/a' if rate is None else f'{100 * rate:.1f} %'})"


def detection_cells(det: dict[str, Any] | None) -> tuple[str, str]:
    """(missed, false detections) of a ``detection`` block as :func:`rate_text`; ``n/a`` without one."""
    if not isinstance(det, dict):
        return "n/a", "n/a"
    return (
        rate_text(det.get("missed"), det.get("truth_nerve_frames"), det.get("missed_rate")),
        rate_text(det.get("false_detections"), det.get("truth_empty_frames"), det.get("false_detection_rate")),
    )


def write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (columns from the first row)."""
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _figure_confusion(path: Path, metrics: dict[str, Any]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = metrics.get("plane_confusion")
    if not conf:
        return False
    mat = np.array(conf["rows_true"], dtype=float)
    norm = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            ax.text(j, i, f"{int(mat[i, j])}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(PLANES)), PLANES)
    ax.set_yticks(range(len(PLANES)), PLANES)
    ax.set_xlabel("predicted plane")
    ax.set_ylabel("true plane")
    ax.set_title("plane confusion (frames)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def dice_groups(frames: list[dict[str, Any]]) -> tuple[str, list[tuple[str, list[float]]]]:
    """The Dice figure's caption and its ``(group, per-frame Dice)`` boxes.

    By quality grade when any frame has one, else by plane when any frame has one (frames
    without the label in an ``unlabelled`` box), else one box of all frames.
    """
    for key, order in (("quality", QUALITY_GRADES), ("plane", PLANES)):
        if not any(r[key] for r in frames):
            continue
        groups = [(str(g), [r["dice"] for r in frames if r[key] == g]) for g in order]
        groups.append(("unlabelled", [r["dice"] for r in frames if r[key] not in order]))
        return f"Dice by {key}", [(g, v) for g, v in groups if v]
    return "Dice of all frames (no quality or plane labels)", [("all", [r["dice"] for r in frames])]


def _figure_dice(path: Path, frames: list[dict[str, Any]]) -> str:
    """Write the per-frame Dice box plot; returns its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caption, groups = dice_groups(frames)
    fig, ax = plt.subplots(figsize=(4.5, 3.4), dpi=110)
    ax.boxplot([v for _, v in groups], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(groups) + 1), [f"{g}\n(n={len(v)})" for g, v in groups])
    ax.set_ylabel("per-frame Dice")
    ax.set_ylim(0, 1.02)
    ax.set_title(caption, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return caption


def _figure_overlays(path: Path, data: EvaluationData) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = sorted((c["dice_mean"], c["clip_id"]) for c in data.clips if c["clip_id"] in data.examples)
    if not scored:
        return False
    picks = [("worst", scored[0]), ("median", scored[len(scored) // 2]), ("best", scored[-1])]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), dpi=100)
    for ax, (name, (score, clip_id)) in zip(axes, picks, strict=True):
        frame, gt, pred = data.examples[clip_id]
        if frame.ndim == 3:  # a whole clip (older callers): its middle frame
            i = frame.shape[0] // 2
            frame, gt, pred = frame[i], gt[i], pred[i]
        ax.imshow(frame, cmap="gray", vmin=0, vmax=255)
        if gt.any():
            ax.contour(gt.astype(np.uint8), levels=[0.5], colors="lime", linewidths=1.0)
        if pred.any():
            ax.contour(pred.astype(np.uint8), levels=[0.5], colors="red", linewidths=1.0)
        ax.set_title(f"{name}: {clip_id}\nclip Dice {score:.3f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("ground truth (green) vs prediction (red), middle frame", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _group_label(value: Any) -> str:
    """A stratum's name in a table: records without the label (``None``) are "unlabelled"."""
    return "unlabelled" if value is None else str(value)


def _strat_table(rows: list[dict[str, Any]] | None, key: str) -> list[str]:
    """A stratum table; each row's ``units`` (mm or px) heads the columns, or its own column when mixed."""
    if not rows:
        return [f"_no {key} labels in this data_"]
    units = {r.get("units") for r in rows}
    mixed = len(units) > 1
    only = UNIT_LABELS.get(str(units.pop())) if not mixed else None
    length, area = (f" ({only[0]})", f" ({only[1]})") if only else ("", "")
    unit_col = " units |" if mixed else ""
    lines = [
        f"| {key} |{unit_col} frames | Dice mean | IoU mean | HD95 mean{length} | ASSD mean{length} | HD95 / ASSD frames |"
        f" CSA abs err median{area} | CSA rel err median | missed (reported) | false detections (reported) |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if mixed else ""),
    ]
    for r in rows:
        unit_cell = f" {' / '.join(UNIT_LABELS.get(str(r.get('units')), ('?', '?')))} |" if mixed else ""
        missed, false = detection_cells(r.get("detection"))
        lines.append(
            f"| {_group_label(r[key])} |{unit_cell} {r['n']} | {_fmt(r.get('dice_mean'))} | {_fmt(r.get('iou_mean'))} | "
            f"{_fmt(r.get('hd95_mean'), 2)} | {_fmt(r.get('assd_mean'), 2)} | {_fmt(r.get('hd95_n'))} | "
            f"{_fmt(r.get('csa_abs_error_median'), 2)} | {_fmt(r.get('csa_rel_error_median'))} | {missed} | {false} |"
        )
    return lines


def _frames_of(n: Any, total: Any) -> str:
    """``4400 of 4404``, or the count alone when the total is unknown (``n/a`` without a count)."""
    if n is None:
        return "n/a"
    return f"{n} of {total}" if total is not None else str(n)


def _area_label(ts: dict[str, Any]) -> str:
    """``mm²`` / ``px²`` for a stability block (its ``units`` as written, otherwise)."""
    return {"mm2": "mm²", "px2": "px²"}.get(str(ts.get("units")), str(ts.get("units")))


def _excursion_rows(block: dict[str, Any] | None) -> list[str]:
    """Summary-table rows of ``metrics.json``'s ``excursion`` block (transverse clips)."""
    if not block:
        return []
    rows = []
    for key, label in (("image", "against the probe"), ("tissue", "against the tissue")):
        part = block.get(key)
        if part:
            rows.append(
                f"| excursion {label}: abs error median ({block['units']}, {part['n_clips']} transverse clips; "
                f"truth median {part['gt_median']:.2f}) | {_ci_text(part.get('abs_error_median_ci'), 2)} |"
            )
    return rows


def _stability_table(ts: dict[str, Any] | None, px: dict[str, Any] | None = None) -> list[str]:
    """Per-clip temporal stability by view, plane and quality grade (mean over clips), one table per unit."""
    if not ts:
        return ["_no clip has more than one frame_"]
    lines = [
        "Mean over clips of mean |ΔCSA| between adjacent frames. The mask area is the nerve's CSA in",
        "transverse views only; in longitudinal views it is the area of a band, so read those rows as mask-area jitter.",
    ]
    for block in (ts, px):
        if block:
            lines += ["", *_stability_rows(block)]
    return lines


def _stability_rows(ts: dict[str, Any]) -> list[str]:
    """One unit's stability table (its unit and clip count in the first header cell)."""
    n = ts.get("n_clips")
    clips = f", {n} clip{'s' if n != 1 else ''}" if n is not None else ""
    lines = [
        f"| group ({_area_label(ts)}{clips}) | clips | pred | truth | abs difference [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for key in ("view", "plane", "quality"):
        for r in ts.get(f"by_{key}") or []:
            diff = _ci_text(r["stability_error_ci"], 3) if r.get("stability_error_ci") else _fmt(r.get("stability_error_mean"), 3)
            pred, truth = _fmt(r.get("stability_pred_mean"), 3), _fmt(r.get("stability_gt_mean"), 3)
            lines.append(f"| {key} {_group_label(r[key])} | {r['n']} | {pred} | {truth} | {diff} |")
    return lines


def write_report(out_dir: Path, metrics: dict[str, Any], data: EvaluationData) -> None:
    """Write ``report.md``, ``frames.csv``, ``clips.csv`` and the figures into ``out_dir``."""
    write_table(out_dir / "frames.csv", data.frames)
    write_table(out_dir / "clips.csv", data.clips)
    has_conf = _figure_confusion(out_dir / "confusion.png", metrics)
    dice_caption = _figure_dice(out_dir / "dice_by_quality.png", data.frames)
    has_overlays = _figure_overlays(out_dir / "overlays.png", data)
    # a figure this evaluation did not draw must not survive from an earlier one in the same folder
    for name, drawn in (("confusion.png", has_conf), ("overlays.png", has_overlays)):
        if not drawn:
            (out_dir / name).unlink(missing_ok=True)
    # mm when any frame has a pixel spacing (its CSA error is defined on every frame)
    units = "mm" if any(metrics.get(k) is not None for k in ("csa_abs_error_mm2_median", "hd95_mm_mean")) else "px"
    area = "mm²" if units == "mm" else "px²"
    ukey = "mm2" if units == "mm" else "px2"
    ts, ts_px = metrics.get("temporal_stability"), metrics.get("temporal_stability_px")
    n_px = metrics.get("n_frames_px")
    n_units = {"mm": None if n_px is None else metrics["n_frames"] - n_px, "px": n_px}
    plane_acc = _ci_text(metrics.get("plane_accuracy_ci"), 4) if metrics.get("plane_accuracy") is not None else "n/a (no plane labels)"
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{metrics.get('checkpoint', '?')}` ({metrics.get('arch', '?')})",
        f"- data: `{metrics['data']}`, split `{metrics['split']}`: {_count(metrics['n_clips'], 'clip')}, "
        f"{_count(metrics['n_frames'], 'frame')}, {_count(metrics['n_participants'], 'participant')}",
        "- masks scored at each clip's original resolution; intervals: " + str(metrics.get("intervals", "95 % participant bootstrap")),
        "",
        "## Summary",
        "",
        "| metric | value [95 % CI] |",
        "|---|---|",
        f"| plane accuracy (frames) | {plane_acc} |",
        f"| plane accuracy (clips) | {_fmt(metrics.get('plane_accuracy_clip'), 4)} |",
        f"| plane macro-F1 | {_fmt(metrics.get('plane_macro_f1'), 4)} |",
        f"| Dice mean | {_ci_text(metrics.get('dice_mean_ci'), 4)} |",
        f"| IoU mean | {_fmt(metrics.get('iou_mean'), 4)} |",
        f"| HD95 mean ({units}) | {_ci_text(metrics.get(f'hd95_{units}_mean_ci'), 2)} |",
        f"| ASSD mean ({units}) | {_fmt(metrics.get(f'assd_{units}_mean'), 2)} |",
        f"| HD95 / ASSD scored on (frames in {units}; see below) | {_frames_of(metrics.get(f'hd95_{units}_n_frames'), n_units[units])} |",
        f"| CSA abs error median ({area}) | {_ci_text(metrics.get(f'csa_abs_error_{ukey}_median_ci'), 2)} |",
        f"| CSA abs error median, as the gateway reports it ({area}; largest region, 0 without a nerve) | "
        f"{_ci_text(metrics.get(f'csa_reported_abs_error_{ukey}_median_ci'), 2)} |",
    ]
    if units == "mm" and any(metrics.get(k) is not None for k in ("hd95_px_mean", "csa_abs_error_px2_median")):
        # frames without a pixel spacing: their own rows, never averaged with the mm ones
        lines += [
            f"| HD95 mean (px, frames without a pixel spacing) | {_ci_text(metrics.get('hd95_px_mean_ci'), 2)} |",
            f"| ASSD mean (px, frames without a pixel spacing) | {_fmt(metrics.get('assd_px_mean'), 2)} |",
            f"| HD95 / ASSD scored on (frames in px) | {_frames_of(metrics.get('hd95_px_n_frames'), n_units['px'])} |",
            f"| CSA abs error median (px², frames without a pixel spacing) | {_ci_text(metrics.get('csa_abs_error_px2_median_ci'), 2)} |",
            "| CSA abs error median, as the gateway reports it (px², frames without a pixel spacing) | "
            f"{_ci_text(metrics.get('csa_reported_abs_error_px2_median_ci'), 2)} |",
        ]
    lines.append(f"| CSA rel error median | {_fmt(metrics.get('csa_rel_error_median'), 3)} |")
    missed, false = detection_cells(metrics.get("detection"))
    lines += [
        f"| missed nerve, as the gateway reports it (of the frames with a nerve in the truth) | {missed} |",
        f"| false detection, as the gateway reports it (of the frames without a nerve in the truth) | {false} |",
    ]
    for block in (ts, ts_px):
        if block:
            n = block.get("n_clips")
            label = f"{_area_label(block)}, {n} clip{'s' if n != 1 else ''}" if n is not None else _area_label(block)
            lines += [
                f"| temporal stability: mean abs ΔCSA pred / truth ({label}) | "
                f"{block['pred_mean_abs_delta_csa']:.3f} / {block['gt_mean_abs_delta_csa']:.3f} |",
                f"| temporal stability: abs difference ({_area_label(block)}) | {_ci_text(block.get('abs_difference_ci'), 3)} |",
            ]
    lines += _excursion_rows(metrics.get("excursion"))
    cases = metrics["cases"]
    lines += [
        "",
        f"Frames, judged on the masks (any marked pixel): {cases['both_present']} with a nerve in both, "
        f"{cases['both_empty']} empty in both, {cases['pred_empty']} with the nerve missed, {cases['gt_empty']} with a nerve "
        "predicted where the truth has none. Dice and IoU score every frame: 1 when both masks are empty, 0 when one is. "
        "HD95 and ASSD are 0 when both are empty and undefined when one is: those frames are left out of their means, "
        'medians and intervals (how many frames they cover: "HD95 / ASSD scored on" above, "HD95 / ASSD frames" in the tables).',
        "",
        f"Missed nerve and false detection, per frame: {metrics['detection']['basis']}. "
        "The missed rate is over the frames with a nerve in the truth, the false-detection rate over those without one."
        if isinstance(metrics.get("detection"), dict)
        else "Missed nerve and false detection: n/a.",
        "",
    ]
    if metrics.get("plane_recall"):
        lines += ["## Planes", "", "| plane | recall |", "|---|---|"]
        lines += [f"| {p} | {_fmt(v, 4)} |" for p, v in metrics["plane_recall"].items()]
        lines.append("")
        if has_conf:
            lines += ["![plane confusion matrix](confusion.png)", ""]
    lines += ["## By plane", "", *_strat_table(metrics.get("by_plane"), "plane"), ""]
    lines += ["## By image quality", "", *_strat_table(metrics.get("by_quality"), "quality"), ""]
    lines += [f"![{dice_caption}](dice_by_quality.png)", ""]
    lines += ["## Temporal stability", "", *_stability_table(ts, ts_px), ""]
    if has_overlays:
        lines += ["## Examples", "", "![best, median and worst clips](overlays.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
