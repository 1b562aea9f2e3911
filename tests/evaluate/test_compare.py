"""Paired differences between two evaluations of the same clips (``ultramn compare``)."""

import numpy as np
import pytest

from ultramn.evaluate.compare import average_clip_rows, paired_difference, paired_table, run_spread_table


def _rows(dice: list[float], stability: list[float], frames: list[int]) -> dict[str, dict[str, str]]:
    """clips.csv rows: clip i belongs to participant i // 2."""
    return {
        f"c{i}": {"clip_id": f"c{i}", "participant_id": f"p{i // 2}", "n_frames": str(n), "dice_mean": str(d), "stability_error": str(s)}
        for i, (d, s, n) in enumerate(zip(dice, stability, frames, strict=True))
    }


def test_paired_difference_is_frame_weighted_for_dice_and_per_clip_for_stability() -> None:
    first = _rows([0.9, 0.8, 0.7, 0.9], [0.1, 0.2, 0.1, 0.1], [10, 30, 10, 10])
    other = _rows([0.8, 0.8, 0.7, 0.8], [0.2, 0.2, 0.3, 0.1], [10, 30, 10, 10])
    diff = paired_difference([first], [other], n_boot=200)
    assert diff.n_clips == 4
    # Dice: (10*0.1 + 30*0 + 10*0 + 10*0.1) / 60
    assert diff.dice.estimate == pytest.approx(2 / 60)
    # stability: mean of (-0.1, 0, -0.2, 0)
    assert diff.stability.estimate == pytest.approx(-0.075)
    assert diff.dice.low <= diff.dice.estimate <= diff.dice.high
    assert diff.dice.n_clusters == 2


def test_only_common_clips_are_paired_and_disjoint_sets_are_refused() -> None:
    first = _rows([0.9, 0.8], [0.1, 0.2], [5, 5])
    other = {"c1": _rows([0.9, 0.6], [0.1, 0.2], [5, 5])["c1"]}
    assert paired_difference([first], [other], n_boot=50).dice.estimate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no clip in common"):
        paired_difference([first], [{"x": {**other["c1"], "clip_id": "x"}}], n_boot=50)


def test_table_states_the_verdict() -> None:
    better = _rows([0.95] * 6, [0.05] * 6, [8] * 6)
    worse = _rows([0.90, 0.91, 0.92, 0.90, 0.91, 0.92], [0.10, 0.12, 0.11, 0.10, 0.12, 0.11], [8] * 6)
    table = paired_table("A", [better], [("B", [worse]), ("C", [better]), ("D", None)])
    lines = table.splitlines()
    assert "| A − B |" in lines[2] and lines[2].count("ahead") == 2
    assert lines[3].count("not resolved") == 2  # identical models: a zero difference is not a lead
    assert "n/a (no clips.csv)" in lines[4]
    reverse = paired_table("B", [worse], [("A", [better])])
    assert reverse.splitlines()[2].count("behind") == 2


def test_still_images_have_no_stability_difference() -> None:
    first = _rows([0.5, 0.6], [float("nan")] * 2, [1, 1])
    other = _rows([0.4, 0.4], [float("nan")] * 2, [1, 1])
    diff = paired_difference([first], [other], n_boot=50)
    assert diff.stability is None and diff.dice.estimate == pytest.approx(0.15)
    assert "| n/a | n/a |" in paired_table("A", [first], [("B", [other])])


def test_replicate_runs_are_averaged_per_clip_before_pairing() -> None:
    run1 = _rows([0.9, 0.8, 0.7, 0.6], [0.1, 0.2, float("nan"), 0.4], [10, 30, 1, 10])
    run2 = _rows([0.7, 0.8, 0.9, 0.6], [0.3, 0.2, float("nan"), 0.0], [10, 30, 1, 10])
    mean = average_clip_rows([run1, run2])
    assert [float(mean[c]["dice_mean"]) for c in sorted(mean)] == pytest.approx([0.8, 0.8, 0.8, 0.6])
    assert [float(mean[c]["stability_error"]) for c in ("c0", "c1", "c3")] == pytest.approx([0.2, 0.2, 0.2])
    assert float(mean["c2"]["stability_error"]) != float(mean["c2"]["stability_error"])  # a still image stays nan
    assert mean["c1"]["n_frames"] == "30" and mean["c1"]["participant_id"] == "p0"
    assert average_clip_rows([run1]) is run1
    # pairing both runs against one run: (run2 - run1) / 2 per clip
    diff = paired_difference([run1, run2], [run1], n_boot=50)
    assert diff.dice.estimate == pytest.approx((10 * -0.1 + 1 * 0.1) / 51)


def test_runs_of_different_clips_are_refused() -> None:
    run1 = _rows([0.9, 0.8], [0.1, 0.2], [5, 5])
    with pytest.raises(ValueError, match="different clips"):
        average_clip_rows([run1, {"c0": run1["c0"]}])
    with pytest.raises(ValueError, match="no runs"):
        average_clip_rows([])


def test_run_spread_pairs_run_1_with_each_other_run() -> None:
    run1 = _rows([0.95] * 6, [0.05] * 6, [8] * 6)
    run2 = _rows([0.90, 0.91, 0.92, 0.90, 0.91, 0.92], [0.10, 0.12, 0.11, 0.10, 0.12, 0.11], [8] * 6)
    lines = run_spread_table("M", [run1, run2, run1]).splitlines()
    assert lines[2].startswith("| M run 1 − M run 2 |") and lines[2].count("ahead") == 2
    assert lines[3].startswith("| M run 1 − M run 3 |") and lines[3].count("not resolved") == 2
    with pytest.raises(ValueError, match="at least two"):
        run_spread_table("M", [run1])


def test_replicate_runs_that_disagree_widen_the_interval() -> None:
    """Two runs of one model, one 0.10 ahead of the other model on every clip and one 0.05
    behind: on the run average (+0.025, the same on every clip) a participant-only bootstrap
    would call it "ahead" with a zero-width interval; resampling the runs does not."""
    dice_other = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90]
    other = _rows(dice_other, [0.1] * 6, [8] * 6)
    lucky = _rows([d + 0.10 for d in dice_other], [0.05] * 6, [8] * 6)
    unlucky = _rows([d - 0.05 for d in dice_other], [0.20] * 6, [8] * 6)
    averaged_only = paired_difference([average_clip_rows([lucky, unlucky])], [other], n_boot=400)
    assert averaged_only.dice.estimate == pytest.approx(0.025)
    assert averaged_only.dice.high - averaged_only.dice.low == pytest.approx(0.0, abs=1e-12)
    both = paired_difference([lucky, unlucky], [other], n_boot=400)
    assert both.dice.estimate == pytest.approx(0.025) and both.stability.estimate == pytest.approx(0.025)
    # the run draws reach both single runs: the interval spans from -0.05 to +0.10
    assert both.dice.low == pytest.approx(-0.05) and both.dice.high == pytest.approx(0.10)
    assert both.stability.low == pytest.approx(-0.05) and both.stability.high == pytest.approx(0.10)
    table = paired_table("A", [lucky, unlucky], [("B", [other])])
    assert table.splitlines()[2].count("not resolved") == 2
    # deterministic for a seed
    again = paired_difference([lucky, unlucky], [other], n_boot=400)
    np.testing.assert_array_equal(again.dice.replicates, both.dice.replicates)


def test_paired_tables_by_view_split_transverse_from_longitudinal_clips() -> None:
    from ultramn.evaluate.compare import paired_tables_by_view

    planes = ["TW", "TF", "LW", "LF"] * 3
    first = _rows([0.9] * 12, [0.1] * 12, [8] * 12)
    # the other model is worse on stability in transverse clips only, by 0.05 mm²
    other = _rows([0.9] * 12, [0.15 if p.startswith("T") else 0.1 for p in planes], [8] * 12)
    for row, plane in zip(first.values(), planes, strict=True):
        row["plane"] = plane  # the view comes from the first model's rows; the other's have no plane
    text = paired_tables_by_view("A", [first], [("B", [other]), ("C", None)])
    transverse, _, longitudinal = text.partition("longitudinal clips (LW, LF) only")
    assert "transverse clips (TW, TF) only" in transverse
    row_t = next(ln for ln in transverse.splitlines() if ln.startswith("| A − B"))
    row_l = next(ln for ln in longitudinal.splitlines() if ln.startswith("| A − B"))
    assert "-0.0500 [-0.0500, -0.0500]" in row_t and row_t.endswith("| 6 |")
    assert "+0.0000 [+0.0000, +0.0000]" in row_l and row_l.endswith("| 6 |")
    assert "n/a (no clips.csv)" in longitudinal
    # clips without plane labels: no per-view tables
    for row in first.values():
        row["plane"] = ""
    assert paired_tables_by_view("A", [first], [("B", [other])]) == ""
