"""Side-by-side table of several evaluations (``metrics.json`` of ``ultramn evaluate``).

Used for the model card's "UltraMN vs reference models" table: each row a model, each
column a headline metric with its 95 % participant-bootstrap interval. Where the folders
hold per-clip rows (``clips.csv``), a second table gives the paired differences of the
first model against each other one on the same clips, over all clips and then by view
(transverse clips, where the mask area is the nerve's CSA, and longitudinal ones).

A model can have several evaluation folders: replicate training runs (``--seed``). Its
per-clip rows are then averaged over the runs (:func:`average_clip_rows`), so the paired
difference is between the models' run-averaged performance on each clip; its interval
comes from a two-level bootstrap that resamples each model's runs as well as the
participants (:func:`paired_difference`), so run-to-run luck widens it. :func:`run_spread_table`
shows how far the replicate runs of one model differ from each other.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.contract import PLANE_VIEWS
from ultramn.evaluate.bootstrap import BootstrapResult, cluster_codes, cluster_draws, percentile_interval

#: per-clip rows of one evaluation (``clips.csv``), keyed by clip id
ClipRows = dict[str, dict[str, str]]

#: (column title, metrics.json key of the point value, key of its interval, digits)
COLUMNS: tuple[tuple[str, str, str | None, int], ...] = (
    ("plane accuracy (frames)", "plane_accuracy", "plane_accuracy_ci", 4),
    ("Dice mean", "dice_mean", "dice_mean_ci", 4),
    ("HD95 mean (mm)", "hd95_mm_mean", "hd95_mm_mean_ci", 2),
    ("CSA abs error median (mm²)", "csa_abs_error_mm2_median", "csa_abs_error_mm2_median_ci", 2),
)


def load_metrics(eval_dir: Path) -> dict[str, Any]:
    """``metrics.json`` of one evaluation folder (or the file itself)."""
    path = eval_dir if eval_dir.suffix == ".json" else eval_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json at {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _cell(metrics: dict[str, Any], key: str, ci_key: str | None, digits: int) -> str:
    value = metrics.get(key)
    if value is None:
        return "n/a"
    ci = metrics.get(ci_key) if ci_key else None
    if ci:
        return f"{value:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"
    return f"{value:.{digits}f}"


def _stability(metrics: dict[str, Any]) -> str:
    ts = metrics.get("temporal_stability")
    if not ts:
        return "n/a"
    ci = ts.get("abs_difference_ci")
    diff = ts["abs_difference_mean"]
    interval = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
    return f"{ts['pred_mean_abs_delta_csa']:.3f} vs {ts['gt_mean_abs_delta_csa']:.3f}; abs diff {diff:.3f}{interval}"


def comparison_table(named: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown table: one row per ``(name, metrics)``."""
    head = ["model", *[c[0] for c in COLUMNS], "temporal stability: mean abs ΔCSA pred vs truth (mm²)", "clips / frames"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in named:
        cells = [name, *[_cell(m, k, ci, d) for _, k, ci, d in COLUMNS], _stability(m), f"{m['n_clips']} / {m['n_frames']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PairedDifference:
    """``first - other`` on the clips both evaluated, with participant-bootstrap intervals.

    ``dice``: frame-weighted mean per-frame Dice difference (positive = first better).
    ``stability``: mean per-clip temporal-stability error difference in mm² (negative =
    first better); ``None`` where no clip has a defined stability (single frames).
    """

    n_clips: int
    dice: BootstrapResult
    stability: BootstrapResult | None


def load_clip_rows(eval_dir: Path) -> ClipRows | None:
    """Per-clip rows (``clips.csv`` of ``ultramn evaluate``) keyed by clip id; ``None`` if absent."""
    folder = eval_dir.parent if eval_dir.suffix == ".json" else eval_dir
    path = folder / "clips.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        return {row["clip_id"]: row for row in csv.DictReader(fh)}


#: the per-clip numbers that :func:`average_clip_rows` averages over replicate runs
AVERAGED_COLUMNS: tuple[str, ...] = ("dice_mean", "stability_error")


def require_same_clips(runs: Sequence[ClipRows]) -> None:
    """Raise ``ValueError`` unless there is at least one run and every run scored the same clips."""
    if not runs:
        raise ValueError("no runs to average")
    clips = set(runs[0])
    for i, run in enumerate(runs[1:], start=2):
        unshared = clips ^ set(run)
        if unshared:
            raise ValueError(
                f"replicate runs scored different clips (run 1: {len(clips)}, run {i}: {len(run)}; {len(unshared)} not in both,"
                f" e.g. {sorted(unshared)[0]})"
            )


def average_clip_rows(runs: Sequence[ClipRows]) -> ClipRows:
    """Per-clip rows of replicate runs of one model, averaged over the runs.

    Every run must have scored the same clips (same test split); ``dice_mean`` and
    ``stability_error`` become their mean over the runs (``nan`` stays ``nan``: still
    images), the other fields come from the first run. One run is returned unchanged.
    """
    require_same_clips(runs)
    if len(runs) == 1:
        return runs[0]
    averaged: ClipRows = {}
    for clip, row in runs[0].items():
        merged = dict(row)
        for key in AVERAGED_COLUMNS:
            merged[key] = repr(float(np.mean([float(run[clip][key]) for run in runs])))
        averaged[clip] = merged
    return averaged


def _column(runs: Sequence[ClipRows], clips: list[str], key: str) -> npt.NDArray[np.float64]:
    """``[n_runs, n_clips]`` float values of ``key``."""
    return np.array([[float(run[c][key]) for c in clips] for run in runs], dtype=np.float64)


def paired_difference(
    first_runs: Sequence[ClipRows], other_runs: Sequence[ClipRows], n_boot: int = 2000, seed: int = 0
) -> PairedDifference:
    """Paired ``first - other`` over the clips both scored (same test clips, two models).

    Each model is given as its replicate runs (one or more ``clips.csv`` row sets of the same
    clips); the estimate pairs the run-averaged per-clip values (:func:`average_clip_rows`).
    Pairing removes the between-clip spread that makes two separate intervals overlap. The
    interval is a two-level percentile bootstrap: each replicate first draws every model's
    runs with replacement (skipped for a model with one run) and then draws participants
    (all their clips), as ``ultramn evaluate`` does. With one run per model this is the
    plain participant bootstrap; with replicate runs, run-to-run luck widens the interval.
    """
    first_mean, other_mean = average_clip_rows(list(first_runs)), average_clip_rows(list(other_runs))
    common = sorted(set(first_mean) & set(other_mean))
    if not common:
        raise ValueError("the two evaluations have no clip in common")
    codes, n_clusters = cluster_codes([first_mean[c]["participant_id"] for c in common])
    weight = np.array([float(first_mean[c]["n_frames"]) for c in common])
    dice_a, dice_b = _column(first_runs, common, "dice_mean"), _column(other_runs, common, "dice_mean")
    stab_a, stab_b = _column(first_runs, common, "stability_error"), _column(other_runs, common, "stability_error")

    def statistics(pick_a: npt.NDArray[np.int64], pick_b: npt.NDArray[np.int64], count: npt.NDArray[np.float64]) -> tuple[float, float]:
        """Frame-weighted Dice and mean stability difference; ``count`` = each clip's multiplicity."""
        d_dice = dice_a[pick_a].mean(axis=0) - dice_b[pick_b].mean(axis=0)
        d_stab = stab_a[pick_a].mean(axis=0) - stab_b[pick_b].mean(axis=0)
        finite = np.isfinite(d_stab)
        n_stab = count[finite].sum()
        dice = float((count * weight * d_dice).sum() / (count * weight).sum())
        return dice, float((count[finite] * d_stab[finite]).sum() / n_stab) if n_stab > 0 else float("nan")

    run_rng = np.random.default_rng([seed, 1])
    all_a, all_b = np.arange(len(first_runs)), np.arange(len(other_runs))
    reps = np.empty((n_boot, 2), dtype=np.float64)
    for b, draw in enumerate(cluster_draws(n_clusters, n_boot, seed)):
        pick_a = run_rng.integers(0, all_a.size, all_a.size) if all_a.size > 1 else all_a
        pick_b = run_rng.integers(0, all_b.size, all_b.size) if all_b.size > 1 else all_b
        count = np.bincount(draw, minlength=n_clusters)[codes].astype(np.float64)
        reps[b] = statistics(pick_a, pick_b, count)
    dice_est, stab_est = statistics(all_a, all_b, np.ones(len(common)))

    def result(estimate: float, replicates: npt.NDArray[np.float64]) -> BootstrapResult:
        low, high = percentile_interval(replicates, 0.95)
        return BootstrapResult(estimate, low, high, 0.95, n_boot, n_clusters, len(common), replicates)

    stability = result(stab_est, reps[:, 1]) if np.isfinite(stab_est) else None
    return PairedDifference(n_clips=len(common), dice=result(dice_est, reps[:, 0]), stability=stability)


def _verdict(result: BootstrapResult | None, better_if_positive: bool) -> str:
    if result is None:
        return "n/a"
    if result.low <= 0.0 <= result.high:
        return "not resolved (interval includes 0)"
    ahead = (result.low > 0) == better_if_positive
    return "ahead" if ahead else "behind"


def paired_table(first_name: str, first: Sequence[ClipRows], others: Sequence[tuple[str, Sequence[ClipRows] | None]]) -> str:
    """Markdown table of :func:`paired_difference` of ``first`` against each other model.

    Every model is given as its replicate runs' rows (``None``: no ``clips.csv``).
    """
    head = ["pair", "Dice difference", "Dice", "stability error difference (mm²)", "stability", "clips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in others:
        if rows is None:
            lines.append(f"| {first_name} − {name} | n/a (no clips.csv) | | | | |")
            continue
        diff = paired_difference(first, rows)
        dice = f"{diff.dice.estimate:+.4f} [{diff.dice.low:+.4f}, {diff.dice.high:+.4f}]"
        st = diff.stability
        stab = "n/a" if st is None else f"{st.estimate:+.4f} [{st.low:+.4f}, {st.high:+.4f}]"
        cells = [f"{first_name} − {name}", dice, _verdict(diff.dice, True), stab, _verdict(diff.stability, False), str(diff.n_clips)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_spread_table(name: str, runs: Sequence[ClipRows]) -> str:
    """Markdown table: paired differences of run 1 against each other replicate run of one model.

    How far two training runs of the same recipe land apart on the same clips: a
    difference between models smaller than this spread is not a difference of models.
    """
    if len(runs) < 2:
        raise ValueError(f"{name}: run spread needs at least two runs")
    others: list[tuple[str, Sequence[ClipRows] | None]] = [(f"{name} run {i}", [run]) for i, run in enumerate(runs[1:], start=2)]
    return paired_table(f"{name} run 1", [runs[0]], others)


#: what each view's paired table is headed with
VIEW_NOTES: dict[str, str] = {
    "transverse": "transverse clips (TW, TF) only: the mask area is the nerve's cross-sectional area (CSA)",
    "longitudinal": "longitudinal clips (LW, LF) only: the mask area is the area of a band, not a CSA",
}


def clips_of_view(runs: Sequence[ClipRows], view: str) -> set[str]:
    """Ids of the clips whose labelled plane (first run's rows) is in ``view`` (:data:`PLANE_VIEWS`)."""
    return {c for c, r in runs[0].items() if PLANE_VIEWS.get(r.get("plane") or "") == view}


def restrict(runs: Sequence[ClipRows], clips: set[str]) -> list[ClipRows]:
    """Each run's rows for ``clips`` only."""
    return [{c: r for c, r in run.items() if c in clips} for run in runs]


def paired_tables_by_view(first_name: str, first: Sequence[ClipRows], others: Sequence[tuple[str, Sequence[ClipRows] | None]]) -> str:
    """:func:`paired_table` once per view of the first model's clips ("" without plane labels).

    The view of a clip comes from the first model's rows; every model is restricted to
    those clips.
    """
    parts = []
    for view, note in VIEW_NOTES.items():
        clips = clips_of_view(first, view)
        if not clips:
            continue
        theirs = [(name, None if runs is None else restrict(runs, clips)) for name, runs in others]
        parts.append(f"\nPaired differences on {note}:\n\n" + paired_table(first_name, restrict(first, clips), theirs))
    return "".join(parts)
