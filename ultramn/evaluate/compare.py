"""Side-by-side table of several evaluations (``metrics.json`` of ``ultramn evaluate``).

Used for the model card's "UltraMN vs reference models" table: each row a model, each
column a headline metric with its 95 % participant-bootstrap interval. Where the folders
hold per-clip rows (``clips.csv``), a second table gives the paired differences of the
first model against each other one on the same clips.

A model can have several evaluation folders: replicate training runs (``--seed``). Its
per-clip rows are then averaged over the runs before pairing (:func:`average_clip_rows`),
so the paired difference is between the models' run-averaged performance on each clip, and
:func:`run_spread_table` shows how far the replicate runs of one model differ from each other.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.evaluate.bootstrap import BootstrapResult, bootstrap_ci, bootstrap_indices

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


def load_clip_rows(eval_dir: Path) -> dict[str, dict[str, str]] | None:
    """Per-clip rows (``clips.csv`` of ``ultramn evaluate``) keyed by clip id; ``None`` if absent."""
    folder = eval_dir.parent if eval_dir.suffix == ".json" else eval_dir
    path = folder / "clips.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        return {row["clip_id"]: row for row in csv.DictReader(fh)}


#: the per-clip numbers that :func:`average_clip_rows` averages over replicate runs
AVERAGED_COLUMNS: tuple[str, ...] = ("dice_mean", "stability_error")


def average_clip_rows(runs: list[dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    """Per-clip rows of replicate runs of one model, averaged over the runs.

    Every run must have scored the same clips (same test split); ``dice_mean`` and
    ``stability_error`` become their mean over the runs (``nan`` stays ``nan``: still
    images), the other fields come from the first run. One run is returned unchanged.
    """
    if not runs:
        raise ValueError("no runs to average")
    if len(runs) == 1:
        return runs[0]
    clips = set(runs[0])
    for i, run in enumerate(runs[1:], start=2):
        if set(run) != clips:
            raise ValueError(f"replicate runs scored different clips (run 1: {len(clips)}, run {i}: {len(run)})")
    averaged: dict[str, dict[str, str]] = {}
    for clip, row in runs[0].items():
        merged = dict(row)
        for key in AVERAGED_COLUMNS:
            merged[key] = repr(float(np.mean([float(run[clip][key]) for run in runs])))
        averaged[clip] = merged
    return averaged


def paired_difference(
    first: dict[str, dict[str, str]], other: dict[str, dict[str, str]], n_boot: int = 2000, seed: int = 0
) -> PairedDifference:
    """Paired ``first - other`` over the clips in both (same test clips, two models).

    Pairing removes the between-clip spread that makes two separate intervals overlap; the
    bootstrap resamples participants (all their clips), as ``ultramn evaluate`` does.
    """
    common = sorted(set(first) & set(other))
    if not common:
        raise ValueError("the two evaluations have no clip in common")
    participants = [first[c]["participant_id"] for c in common]
    weight = np.array([float(first[c]["n_frames"]) for c in common])
    d_dice = np.array([float(first[c]["dice_mean"]) - float(other[c]["dice_mean"]) for c in common])
    d_stab = np.array([float(first[c]["stability_error"]) - float(other[c]["stability_error"]) for c in common])

    def weighted_dice(rows: npt.NDArray[np.int64]) -> float:
        return float((weight[rows] * d_dice[rows]).sum() / weight[rows].sum())

    stability = bootstrap_ci(d_stab, participants, "mean", n_boot=n_boot, seed=seed) if np.isfinite(d_stab).any() else None
    return PairedDifference(
        n_clips=len(common),
        dice=bootstrap_indices(participants, weighted_dice, n_boot=n_boot, seed=seed),
        stability=stability,
    )


def _verdict(result: BootstrapResult | None, better_if_positive: bool) -> str:
    if result is None:
        return "n/a"
    if result.low <= 0.0 <= result.high:
        return "not resolved (interval includes 0)"
    ahead = (result.low > 0) == better_if_positive
    return "ahead" if ahead else "behind"


def paired_table(first_name: str, first: dict[str, dict[str, str]], others: list[tuple[str, dict[str, dict[str, str]] | None]]) -> str:
    """Markdown table of :func:`paired_difference` of ``first`` against each other model."""
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


def run_spread_table(name: str, runs: list[dict[str, dict[str, str]]]) -> str:
    """Markdown table: paired differences of run 1 against each other replicate run of one model.

    How far two training runs of the same recipe land apart on the same clips: a
    difference between models smaller than this spread is not a difference of models.
    """
    if len(runs) < 2:
        raise ValueError(f"{name}: run spread needs at least two runs")
    others: list[tuple[str, dict[str, dict[str, str]] | None]] = [(f"{name} run {i}", run) for i, run in enumerate(runs[1:], start=2)]
    return paired_table(f"{name} run 1", runs[0], others)
