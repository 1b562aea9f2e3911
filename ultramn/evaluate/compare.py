"""Side-by-side table of several evaluations (``metrics.json`` of ``ultramn evaluate``).

Used for the model card's "UltraMN vs reference models" table: each row a model, each
column a headline metric with its 95 % participant-bootstrap interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
