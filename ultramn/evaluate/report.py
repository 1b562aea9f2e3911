"""The evaluation report: ``report.md``, per-frame/per-clip CSV tables and PNG figures.

Figures: ``confusion.png`` (plane confusion matrix, when the data has plane labels),
``dice_by_quality.png`` (per-frame Dice box plot per image-quality grade, or per plane
when grades are missing) and ``overlays.png`` (best / median / worst clip by mean Dice,
middle frame, ground truth green, prediction red).
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


def _ci_text(ci: dict[str, Any] | None, digits: int = 3) -> str:
    if not ci:
        return "n/a"
    return f"{ci['estimate']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


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


def _figure_dice(path: Path, frames: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, order = ("quality", list(QUALITY_GRADES)) if any(r["quality"] for r in frames) else ("plane", list(PLANES))
    groups = [(g, [r["dice"] for r in frames if r[key] == g]) for g in order]
    groups = [(g, v) for g, v in groups if v] or [("all", [r["dice"] for r in frames])]
    fig, ax = plt.subplots(figsize=(4.5, 3.4), dpi=110)
    ax.boxplot([v for _, v in groups], showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(groups) + 1), [f"{g}\n(n={len(v)})" for g, v in groups])
    ax.set_ylabel("per-frame Dice")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Dice by {key if groups[0][0] != 'all' else 'frame'}")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return key


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
        frames, gt, pred = data.examples[clip_id]
        i = frames.shape[0] // 2
        ax.imshow(frames[i], cmap="gray", vmin=0, vmax=255)
        if gt[i].any():
            ax.contour(gt[i], levels=[0.5], colors="lime", linewidths=1.0)
        if pred[i].any():
            ax.contour(pred[i], levels=[0.5], colors="red", linewidths=1.0)
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


def _strat_table(rows: list[dict[str, Any]] | None, key: str, units: str) -> list[str]:
    if not rows:
        return [f"_no {key} labels in this data_"]
    lines = [
        f"| {key} | frames | Dice mean | IoU mean | HD95 mean ({units}) | ASSD mean ({units}) | CSA abs err median | CSA rel err median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {_group_label(r[key])} | {r['n']} | {_fmt(r.get('dice_mean'))} | {_fmt(r.get('iou_mean'))} | "
            f"{_fmt(r.get('hd95_mean'), 2)} | {_fmt(r.get('assd_mean'), 2)} | {_fmt(r.get('csa_abs_error_median'), 2)} | "
            f"{_fmt(r.get('csa_rel_error_median'))} |"
        )
    return lines


def _stability_table(ts: dict[str, Any] | None) -> list[str]:
    """Per-clip temporal stability by view, plane and quality grade (mean over clips)."""
    if not ts:
        return ["_no clip has more than one frame_"]
    lines = [
        f"Mean over clips of mean |ΔCSA| between adjacent frames ({ts['units']}). The mask area is the nerve's CSA in",
        "transverse views only; in longitudinal views it is the area of a band, so read those rows as mask-area jitter.",
        "",
        "| group | clips | pred | truth | abs difference [95 % CI] |",
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
    dice_key = _figure_dice(out_dir / "dice_by_quality.png", data.frames)
    has_overlays = _figure_overlays(out_dir / "overlays.png", data)
    units = "mm" if metrics.get("hd95_mm_mean") is not None else "px"
    area = "mm²" if units == "mm" else "px²"
    ukey = "mm2" if units == "mm" else "px2"
    ts = metrics.get("temporal_stability")
    plane_acc = _ci_text(metrics.get("plane_accuracy_ci"), 4) if metrics.get("plane_accuracy") is not None else "n/a (no plane labels)"
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{metrics.get('checkpoint', '?')}` ({metrics.get('arch', '?')})",
        f"- data: `{metrics['data']}`, split `{metrics['split']}`: {metrics['n_clips']} clips, "
        f"{metrics['n_frames']} frames, {metrics['n_participants']} participants",
        "- masks scored at each clip's original resolution; intervals are 95 % bootstrap intervals resampling participants",
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
        f"| CSA abs error median ({area}) | {_ci_text(metrics.get(f'csa_abs_error_{ukey}_median_ci'), 2)} |",
        f"| CSA rel error median | {_fmt(metrics.get('csa_rel_error_median'), 3)} |",
    ]
    if ts:
        lines += [
            f"| temporal stability: mean abs ΔCSA pred / truth ({ts['units']}) | "
            f"{ts['pred_mean_abs_delta_csa']:.3f} / {ts['gt_mean_abs_delta_csa']:.3f} |",
            f"| temporal stability: abs difference | {_ci_text(ts.get('abs_difference_ci'), 3)} |",
        ]
    cases = metrics["cases"]
    lines += [
        "",
        f"Frames: {cases['both_present']} with a nerve in both, {cases['both_empty']} empty in both, "
        f"{cases['pred_empty']} missed, {cases['gt_empty']} false positives (HD95/ASSD undefined for the last two).",
        "",
    ]
    if metrics.get("plane_recall"):
        lines += ["## Planes", "", "| plane | recall |", "|---|---|"]
        lines += [f"| {p} | {_fmt(v, 4)} |" for p, v in metrics["plane_recall"].items()]
        lines.append("")
        if has_conf:
            lines += ["![plane confusion matrix](confusion.png)", ""]
    lines += ["## By plane", "", *_strat_table(metrics.get("by_plane"), "plane", units), ""]
    lines += ["## By image quality", "", *_strat_table(metrics.get("by_quality"), "quality", units), ""]
    lines += [f"![Dice by {dice_key}](dice_by_quality.png)", ""]
    lines += ["## Temporal stability", "", *_stability_table(ts), ""]
    if has_overlays:
        lines += ["## Examples", "", "![best, median and worst clips](overlays.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
