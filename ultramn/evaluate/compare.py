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

Lengths and areas carry their unit (mm / mm² with a pixel spacing, px / px² without) in
the column title when every evaluation shares it, in each cell otherwise. An evaluation that
mixes units (some clips with a pixel spacing, some without) shows its mm figures in its row;
a note under the table gives its px figures (:func:`units_note`). Missed nerves and false
detections are frame counts as the gateway reports a nerve (``detection`` in metrics.json;
``n/a`` for evaluations written before it). A file that is
not an evaluation's ``metrics.json`` / ``clips.csv`` raises ``ValueError`` naming it.
With fewer than two participants there is no interval.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.contract import PLANE_VIEWS
from ultramn.evaluate.bootstrap import BootstrapResult, cluster_codes, cluster_draws, percentile_interval
from ultramn.evaluate.report import detection_cells

#: per-clip rows of one evaluation (``clips.csv``), keyed by clip id
ClipRows = dict[str, dict[str, str]]

#: a participant bootstrap needs at least this many participants to give an interval
MIN_PARTICIPANTS = 2

#: (column title, metrics.json key of the point value, key of its interval, digits, dimension);
#: ``{u}`` in a key is the evaluation's unit: ``mm``/``px`` for a length, ``mm2``/``px2`` for an area
COLUMNS: tuple[tuple[str, str, str | None, int, str | None], ...] = (
    ("plane accuracy (frames)", "plane_accuracy", "plane_accuracy_ci", 4, None),
    ("Dice mean", "dice_mean", "dice_mean_ci", 4, None),
    ("HD95 mean", "hd95_{u}_mean", "hd95_{u}_mean_ci", 2, "length"),
    ("CSA abs error median", "csa_abs_error_{u}_median", "csa_abs_error_{u}_median_ci", 2, "area"),
    # the CSA the gateway reports (largest region, 0 below the nerve threshold); n/a in evaluations older than the key
    ("reported CSA abs error median", "csa_reported_abs_error_{u}_median", "csa_reported_abs_error_{u}_median_ci", 2, "area"),
)

#: (key in metrics.json, label) per unit and dimension
UNIT_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "mm": {"length": ("mm", "mm"), "area": ("mm2", "mm²")},
    "px": {"length": ("px", "px"), "area": ("px2", "px²")},
}

#: what the ``units`` of a temporal-stability block (or of a clips.csv row) reads as
AREA_LABELS = {"mm2": "mm²", "px2": "px²", "mm": "mm²", "px": "px²", "mixed/px2": "mixed mm²/px²"}


def column_keys(key: str, ci_key: str | None, dim: str | None, units: str) -> tuple[str, str | None]:
    """A column's metrics.json keys (value, interval) for an evaluation in ``units`` (``mm`` or ``px``)."""
    u = UNIT_KEYS[units][dim][0] if dim else ""
    return key.format(u=u), ci_key.format(u=u) if ci_key else None


#: metrics.json keys that must be present, and the keys that must be a number (or interval) or null where present
REQUIRED_KEYS = ("n_clips", "n_frames", "dice_mean")
_ALL_KEYS = [column_keys(k, ci, dim, u) for _, k, ci, _, dim in COLUMNS for u in ("mm", "px")]
NUMBER_KEYS = ("n_clips", "n_frames", *(k for k, _ in _ALL_KEYS))
CI_KEYS = tuple(ci for _, ci in _ALL_KEYS if ci)
STABILITY_KEYS = ("pred_mean_abs_delta_csa", "gt_mean_abs_delta_csa", "abs_difference_mean")
#: the counts of a ``detection`` block (a number or null each) and its rates
DETECTION_KEYS = ("truth_nerve_frames", "missed", "missed_rate", "truth_empty_frames", "false_detections", "false_detection_rate")

#: the clips.csv columns pairing needs, and those of them that must be numbers
CLIP_COLUMNS = ("clip_id", "participant_id", "n_frames", "dice_mean", "stability_error")
CLIP_NUMBER_COLUMNS = ("n_frames", "dice_mean", "stability_error")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_metrics(data: Any, path: Path) -> dict[str, Any]:
    """``data`` when it looks like an ``ultramn evaluate`` metrics.json, else ``ValueError`` naming ``path``."""
    what = f"{path}: not a metrics.json written by ultramn evaluate"
    if not isinstance(data, dict):
        raise ValueError(f"{what} (a JSON {type(data).__name__}, not an object)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{what} (no {', '.join(missing)})")
    for key in NUMBER_KEYS:
        if data.get(key) is not None and not _is_number(data[key]):
            raise ValueError(f"{what} ({key} is {data[key]!r}, not a number)")
    for key in CI_KEYS:
        ci = data.get(key)
        if ci is not None and not (isinstance(ci, dict) and all(ci.get(b) is None or _is_number(ci[b]) for b in ("low", "high"))):
            raise ValueError(f"{what} ({key} is not an interval)")
    det = data.get("detection")
    if det is not None and not (isinstance(det, dict) and all(det.get(k) is None or _is_number(det[k]) for k in DETECTION_KEYS)):
        raise ValueError(f"{what} (detection is not a block of frame counts and rates)")
    ts = data.get("temporal_stability")
    if ts is not None and not (isinstance(ts, dict) and all(_is_number(ts.get(k)) for k in STABILITY_KEYS)):
        raise ValueError(f"{what} (temporal_stability lacks {', '.join(STABILITY_KEYS)})")
    return data


def load_metrics(eval_dir: Path) -> dict[str, Any]:
    """``metrics.json`` of one evaluation folder (or the file itself); ``ValueError`` naming the file if it is not one."""
    path = eval_dir if eval_dir.suffix == ".json" else eval_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json at {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a metrics.json written by ultramn evaluate (not JSON: {exc})") from exc
    return check_metrics(data, path)


def metric_units(metrics: dict[str, Any]) -> str:
    """``mm`` when the evaluation has values in mm (clips with a pixel spacing), ``px`` when it has them only in px."""
    has = {u: any(metrics.get(k) is not None for k in (f"hd95_{u}_mean", f"csa_abs_error_{u}2_median")) for u in ("mm", "px")}
    return "px" if has["px"] and not has["mm"] else "mm"


def _bounds(ci: Any, digits: int) -> str:
    """`` [low, high]``, `` [n/a, 1 participant]`` for an interval without bounds, ``""`` without one."""
    if not isinstance(ci, dict):
        return ""
    if ci.get("low") is None or ci.get("high") is None:
        n = ci.get("n_participants")
        return f" [n/a, {n} participant{'s' if n != 1 else ''}]" if n is not None else " [n/a]"
    return f" [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def _cell(metrics: dict[str, Any], key: str, ci_key: str | None, digits: int, unit: str = "") -> str:
    value = metrics.get(key)
    if value is None:
        return "n/a"
    ci = metrics.get(ci_key) if ci_key else None
    return f"{value:.{digits}f}{_bounds(ci, digits)}{unit}"


def _stability_units(metrics: dict[str, Any]) -> str | None:
    ts = metrics.get("temporal_stability")
    return AREA_LABELS.get(str(ts.get("units")), str(ts.get("units"))) if ts and ts.get("units") else None


def _stability(metrics: dict[str, Any], unit: str = "") -> str:
    ts = metrics.get("temporal_stability")
    if not ts:
        return "n/a"
    diff = ts["abs_difference_mean"]
    interval = _bounds(ts.get("abs_difference_ci"), 3)
    return f"{ts['pred_mean_abs_delta_csa']:.3f} vs {ts['gt_mean_abs_delta_csa']:.3f}; abs diff {diff:.3f}{interval}{unit}"


def split_note(named: list[tuple[str, dict[str, Any]]]) -> str:
    """A note when the evaluations scored different splits ("" when they agree or do not say).

    Their rows then describe different clips: a difference between them is not one of models.
    (The ``data`` paths are not compared: one folder can be named relatively or absolutely.)
    """
    splits = {str(m["split"]) for _, m in named if m.get("split") is not None}
    if len(splits) < 2:
        return ""
    listed = ", ".join(f"{name}: {m['split']}" for name, m in named if m.get("split") is not None)
    return f"\nNote: these evaluations scored different splits ({listed}); their rows are not the same clips.\n"


def units_note(named: list[tuple[str, dict[str, Any]]]) -> str:
    """A note per evaluation that mixes units ("" when none does).

    Its row shows the lengths, areas and temporal stability of its clips in mm only; the
    figures of its frames without a pixel spacing (in px / px²) would otherwise be dropped
    without a word. Dice, plane accuracy and detection cover all its frames.
    """
    notes = []
    for name, m in named:
        px_cells = []
        for title, key, ci, digits, dim in COLUMNS:
            if dim:
                value_key, ci_key = column_keys(key, ci, dim, "px")
                if m.get(value_key) is not None:
                    px_cells.append(f"{title} {_cell(m, value_key, ci_key, digits, ' ' + UNIT_KEYS['px'][dim][1])}")
        ts_px = m.get("temporal_stability_px")
        if isinstance(ts_px, dict) and all(_is_number(ts_px.get(k)) for k in STABILITY_KEYS):
            px_cells.append(f"temporal stability {_stability(m | {'temporal_stability': ts_px}, ' px²')}")
        if metric_units(m) != "mm" or not px_cells:
            continue
        n_px = m.get("n_frames_px")
        which = f"{n_px} of its {m['n_frames']} frames have" if _is_number(n_px) else "some of its frames have"
        notes.append(
            f"\nNote: {name} mixes units: {which} no pixel spacing. Its HD95, CSA and temporal-stability cells cover"
            f" its frames in mm only; those in px are left out of them: {'; '.join(px_cells)} (see its report.md)."
            " Its Dice, plane accuracy and detection cells cover all its frames.\n"
        )
    return "".join(notes)


def comparison_table(named: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown table: one row per ``(name, metrics)``.

    A length or area column names its unit when every evaluation has it; otherwise each
    cell does (an evaluation without pixel spacings is in px).
    """
    units = [metric_units(m) for _, m in named]
    shared = units[0] if len(set(units)) == 1 else None
    head = ["model"]
    for title, _, _, _, dim in COLUMNS:
        head.append(f"{title} ({UNIT_KEYS[shared][dim][1]})" if dim and shared else title)
    stab_units = {_stability_units(m) for _, m in named} - {None}
    stab_shared = stab_units.pop() if len(stab_units) == 1 else None
    head += [
        "missed nerve (frames, as reported)",
        "false detections (frames, as reported)",
        f"temporal stability: mean abs ΔCSA pred vs truth{f' ({stab_shared})' if stab_shared else ''}",
        "clips / frames",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, m), u in zip(named, units, strict=True):
        cells = [name]
        for _, key, ci, digits, dim in COLUMNS:
            suffix = "" if not dim or shared else f" {UNIT_KEYS[u][dim][1]}"
            cells.append(_cell(m, *column_keys(key, ci, dim, u), digits, suffix))
        stab_suffix = "" if stab_shared or _stability_units(m) is None else f" {_stability_units(m)}"
        cells += [*detection_cells(m.get("detection")), _stability(m, stab_suffix), f"{m['n_clips']} / {m['n_frames']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PairedDifference:
    """``first - other`` on the clips both evaluated, with participant-bootstrap intervals.

    ``dice``: frame-weighted mean per-frame Dice difference (positive = first better).
    ``stability``: mean per-clip temporal-stability error difference in the clips' area unit
    (:func:`clip_area_units`; negative = first better); ``None`` where no clip has a defined
    stability (single frames). With fewer than two participants ``low``/``high`` are ``nan``:
    no interval.
    """

    n_clips: int
    dice: BootstrapResult
    stability: BootstrapResult | None


def load_clip_rows(eval_dir: Path) -> ClipRows | None:
    """Per-clip rows (``clips.csv`` of ``ultramn evaluate``) keyed by clip id; ``None`` if absent.

    ``ValueError`` naming the file when it lacks a column pairing needs or a number is not one.
    """
    folder = eval_dir.parent if eval_dir.suffix == ".json" else eval_dir
    path = folder / "clips.csv"
    if not path.is_file():
        return None
    what = f"{path}: not a clips.csv written by ultramn evaluate"
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CLIP_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{what} (missing columns: {', '.join(missing)})")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{what} ({exc})") from exc
    for line, row in enumerate(rows, start=2):
        for col in CLIP_NUMBER_COLUMNS:
            try:
                float(row[col] or "")
            except (TypeError, ValueError):
                raise ValueError(f"{what} (line {line}: {col} is {row[col]!r}, not a number)") from None
    return {row["clip_id"]: row for row in rows}


#: the per-clip numbers that :func:`average_clip_rows` averages over replicate runs
AVERAGED_COLUMNS: tuple[str, ...] = ("dice_mean", "stability_error")


def require_same_clips(runs: Sequence[ClipRows]) -> None:
    """Raise ``ValueError`` unless there is at least one run and every run scored the same clips in the same units."""
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
        clash = unit_mismatches([runs[0]], [run])
        if clash:
            raise ValueError(
                f"replicate runs scored {len(clash)} clip(s) in different units (run 1 and run {i}: mm² in one, px² in the other,"
                f" e.g. {clash[0]}): their stability errors cannot be averaged"
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
        """Percentile interval; none (``nan``) with fewer than two participants."""
        low, high = percentile_interval(replicates, 0.95) if n_clusters >= MIN_PARTICIPANTS else (math.nan, math.nan)
        return BootstrapResult(estimate, low, high, 0.95, n_boot, n_clusters, len(common), replicates)

    stability = result(stab_est, reps[:, 1]) if np.isfinite(stab_est) else None
    return PairedDifference(n_clips=len(common), dice=result(dice_est, reps[:, 0]), stability=stability)


def _verdict(result: BootstrapResult | None, better_if_positive: bool) -> str:
    if result is None:
        return "n/a"
    if not (math.isfinite(result.low) and math.isfinite(result.high)):
        return f"n/a ({result.n_clusters} participant{'s' if result.n_clusters != 1 else ''}: no interval)"
    if result.low <= 0.0 <= result.high:
        return "not resolved (interval includes 0)"
    ahead = (result.low > 0) == better_if_positive
    return "ahead" if ahead else "behind"


def _difference_text(result: BootstrapResult) -> str:
    """``+estimate [low, high]``, or ``[n/a, 1 participant]`` without an interval."""
    if math.isfinite(result.low) and math.isfinite(result.high):
        return f"{result.estimate:+.4f} [{result.low:+.4f}, {result.high:+.4f}]"
    n = result.n_clusters
    return f"{result.estimate:+.4f} [n/a, {n} participant{'s' if n != 1 else ''}]"


def clip_area_units(runs: Sequence[ClipRows]) -> str | None:
    """The area unit of the clips' stability (``mm²``, ``px²``, ``mixed mm²/px²``); ``None`` without a ``units`` column."""
    units = {r.get("units") or "" for run in runs for r in run.values()}
    if not units or "" in units:
        return None
    return AREA_LABELS.get(units.pop()) if len(units) == 1 else AREA_LABELS["mixed/px2"]


def clips_by_unit(runs: Sequence[ClipRows]) -> dict[str, set[str]]:
    """Ids of the first run's clips per ``units`` value (``mm``, ``px``; ``""`` without the column)."""
    found: dict[str, set[str]] = {}
    for clip, row in runs[0].items():
        found.setdefault(row.get("units") or "", set()).add(clip)
    return found


def unit_mismatches(first: Sequence[ClipRows], other: Sequence[ClipRows]) -> list[str]:
    """Ids of the clips both scored whose ``units`` differ (``mm`` in one evaluation, ``px`` in the
    other: one manifest had a pixel spacing the other lacked); rows without ``units`` never differ."""
    mine, theirs = first[0], other[0]
    return sorted(c for c in set(mine) & set(theirs) if (u := mine[c].get("units")) and (v := theirs[c].get("units")) and u != v)


def _pair_cells(label: str, first: Sequence[ClipRows], other: Sequence[ClipRows], unit: str | None) -> list[str]:
    """One paired-table row; ``unit`` (an area label) is written in the stability cell when given.

    Where the two evaluations scored a clip in different units (mm² and px²), the stability
    difference would subtract one unit from the other: its cell says so instead.
    """
    diff = paired_difference(first, other)
    st = diff.stability
    clash = unit_mismatches(first, other)
    if clash and st is not None:
        n = len(clash)
        return [
            label,
            _difference_text(diff.dice),
            _verdict(diff.dice, True),
            f"n/a ({n} clip{'s' if n != 1 else ''} scored in mm² by one and px² by the other, e.g. {clash[0]})",
            "",
            str(diff.n_clips),
        ]
    stab = "n/a" if st is None else _difference_text(st) + (f" {unit}" if unit else "")
    return [label, _difference_text(diff.dice), _verdict(diff.dice, True), stab, _verdict(diff.stability, False), str(diff.n_clips)]


def paired_table(first_name: str, first: Sequence[ClipRows], others: Sequence[tuple[str, Sequence[ClipRows] | None]]) -> str:
    """Markdown table of :func:`paired_difference` of ``first`` against each other model.

    Every model is given as its replicate runs' rows (``None``: no ``clips.csv``). When the
    first model's clips are in mixed units (some with a pixel spacing, some without), a
    stability difference in mm² and one in px² cannot be averaged: each pair then has a row
    over all clips with Dice only, and one row per unit over that unit's clips, the unit in
    each stability cell.
    """
    unit = clip_area_units(first)
    by_unit = clips_by_unit(first)
    mixed = len(by_unit) > 1
    title = "stability error difference" + (f" ({unit})" if unit and not mixed else "")
    head = ["pair", "Dice difference", "Dice", title, "stability", "clips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in others:
        label = f"{first_name} − {name}"
        if rows is None:
            lines.append(f"| {label} | n/a (no clips.csv) | | | | |")
            continue
        if not set(first[0]) & set(rows[0]):
            lines.append(f"| {label} | n/a (no clip in common) | | | | 0 |")
            continue
        cells = _pair_cells(label, first, rows, None)
        if mixed:
            cells[3:5] = ["n/a (mixed mm²/px²: per unit below)", ""]
        lines.append("| " + " | ".join(cells) + " |")
        for code, clips in sorted(by_unit.items()) if mixed else ():
            area = AREA_LABELS.get(code, "?")
            mine, theirs = restrict(first, clips), restrict(rows, clips)
            lines.append("| " + " | ".join(_pair_cells(f"{label}, clips in {area.removesuffix('²')}", mine, theirs, area)) + " |")
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
