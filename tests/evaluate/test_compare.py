"""Paired differences between two evaluations of the same clips (``ultramn compare``)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli import run_ultramn
from ultramn.evaluate.compare import (
    average_clip_rows,
    comparison_table,
    load_clip_rows,
    load_metrics,
    paired_difference,
    paired_table,
    run_spread_table,
)


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


def minimal_metrics(units: str = "mm", **extra: object) -> dict[str, object]:
    """A minimal metrics.json of ``ultramn evaluate`` with lengths/areas in ``units``."""
    area = f"{units}2"
    ci = {"estimate": 1.5, "low": 1.0, "high": 2.0, "n_participants": 3}
    return {
        "n_clips": 2,
        "n_frames": 4,
        "n_participants": 3,
        "plane_accuracy": None,
        "dice_mean": 0.8,
        "dice_mean_ci": {"estimate": 0.8, "low": 0.7, "high": 0.9, "n_participants": 3},
        f"hd95_{units}_mean": 1.5,
        f"hd95_{units}_mean_ci": ci,
        f"csa_abs_error_{area}_median": 1.5,
        f"csa_abs_error_{area}_median_ci": ci,
        "temporal_stability": {
            "units": area,
            "pred_mean_abs_delta_csa": 0.5,
            "gt_mean_abs_delta_csa": 0.4,
            "abs_difference_mean": 0.1,
            "abs_difference_ci": None,
        },
        **extra,
    }


def _write_eval(
    folder: Path, metrics: object, clips: str | None = "clip_id,participant_id,n_frames,dice_mean,stability_error\nc0,p0,2,0.8,0.1\n"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if clips is not None:
        (folder / "clips.csv").write_text(clips)
    return folder


def _compare(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``ultramn compare ARGS`` in-process: (exit code, stderr)."""
    return run_ultramn(monkeypatch, capsys, "compare", *args)


def test_compare_refuses_files_that_are_not_evaluations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old compare raised KeyError / AttributeError tracebacks on these."""
    good = _write_eval(tmp_path / "good", minimal_metrics())
    summary = tmp_path / "run" / "summary.json"  # a training summary, not an evaluation
    summary.parent.mkdir()
    summary.write_text(json.dumps({"best_epoch": 1, "best_metrics": {"dice": 0.1}}))
    bad = {
        "summary": (summary, "no n_clips"),
        "empty": (_write_eval(tmp_path / "empty", {}, clips=None), "no n_clips"),
        "list": (_write_eval(tmp_path / "list", [1], clips=None), "a JSON list"),
        "text": (_write_eval(tmp_path / "text", minimal_metrics(dice_mean="high"), clips=None), "dice_mean is 'high'"),
        "clips": (_write_eval(tmp_path / "clips", minimal_metrics(), clips="foo\n1\n"), "missing columns: clip_id"),
        "cells": (
            _write_eval(
                tmp_path / "cells", minimal_metrics(), clips="clip_id,participant_id,n_frames,dice_mean,stability_error\nc0,p0,2,x,0.1\n"
            ),
            "dice_mean is 'x'",
        ),
    }
    (tmp_path / "notjson").mkdir()
    (tmp_path / "notjson" / "metrics.json").write_text("{bad")
    bad["notjson"] = (tmp_path / "notjson", "not JSON")
    for name, (path, why) in bad.items():
        code, err = _compare(monkeypatch, capsys, f"A={good}", f"B={path}")
        assert code == 2, name
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: B: ") and str(path) in err and why in err, err
    with pytest.raises(ValueError, match=r"empty.*not a metrics\.json"):
        load_metrics(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"clips\.csv.*missing columns: clip_id"):
        load_clip_rows(tmp_path / "clips")
    assert _compare(monkeypatch, capsys, f"A={good}", f"B={good}")[0] == 0


def test_comparison_table_labels_units_truthfully() -> None:
    """The old table titled its columns mm / mm² whatever the evaluations' units."""
    px = comparison_table([("A", minimal_metrics("px")), ("B", minimal_metrics("px"))])
    head = px.splitlines()[0]
    assert "HD95 mean (px)" in head and "CSA abs error median (px²)" in head and "pred vs truth (px²)" in head and "mm" not in px
    assert "| 1.50 [1.00, 2.00] | 1.50 [1.00, 2.00] |" in px.splitlines()[2]
    mixed = comparison_table([("A", minimal_metrics("mm")), ("B", minimal_metrics("px"))])
    head, row_a, row_b = mixed.splitlines()[0], mixed.splitlines()[2], mixed.splitlines()[3]
    assert "HD95 mean |" in head and "CSA abs error median |" in head and "(mm" not in head and "(px" not in head
    assert "| 1.50 [1.00, 2.00] mm | 1.50 [1.00, 2.00] mm² |" in row_a and row_a.rstrip(" |").split("|")[-2].strip().endswith("mm²")
    assert "| 1.50 [1.00, 2.00] px | 1.50 [1.00, 2.00] px² |" in row_b and row_b.rstrip(" |").split("|")[-2].strip().endswith("px²")
    # the paired table's stability column takes its unit from clips.csv
    rows = _rows([0.9, 0.8], [0.1, 0.2], [5, 5])
    for r in rows.values():
        r["units"] = "px"
    assert "stability error difference (px²)" in paired_table("A", [rows], [("B", [rows])])


def test_one_participant_gives_no_paired_interval() -> None:
    """Two clips of one participant: the old table printed a zero-width interval and a verdict."""
    first = _rows([0.9, 0.8], [0.1, 0.2], [5, 5])
    other = _rows([0.7, 0.6], [0.3, 0.3], [5, 5])
    diff = paired_difference([first], [other], n_boot=50)
    assert diff.dice.n_clusters == 1 and np.isnan(diff.dice.low) and np.isnan(diff.dice.high)
    assert diff.dice.to_dict()["low"] is None
    row = paired_table("A", [first], [("B", [other])]).splitlines()[2]
    assert "+0.2000 [n/a, 1 participant]" in row and "ahead" not in row and row.count("n/a (1 participant: no interval)") == 2
    # a one-participant metrics.json has an estimate and no bounds
    one = minimal_metrics(dice_mean_ci={"estimate": 0.8, "low": None, "high": None, "n_participants": 1})
    assert "| 0.8000 [n/a, 1 participant] |" in comparison_table([("A", one)])


def test_paired_table_keeps_mm_and_px_stability_apart() -> None:
    """Clips with and without a pixel spacing: the old table averaged mm² and px² differences."""
    first = _rows([0.9] * 8, [0.1, 0.1, 0.1, 0.1, 5.0, 5.0, 5.0, 5.0], [10] * 8)
    other = _rows([0.8] * 8, [0.3, 0.3, 0.3, 0.3, 1.0, 1.0, 1.0, 1.0], [10] * 8)
    for rows in (first, other):
        for i, r in enumerate(rows.values()):
            r["units"] = "mm" if i < 4 else "px"  # participants p0, p1 in mm; p2, p3 in px
    lines = paired_table("A", [first], [("B", [other])]).splitlines()
    assert "stability error difference |" in lines[0]  # no single unit in the title
    whole, mm, px = lines[2], lines[3], lines[4]
    assert whole.startswith("| A − B |") and "+0.1000" in whole and "n/a (mixed mm²/px²" in whole and "| 8 |" in whole
    assert mm.startswith("| A − B, clips in mm |") and "-0.2000 [-0.2000, -0.2000] mm²" in mm and "| ahead | 4 |" in mm
    assert px.startswith("| A − B, clips in px |") and "+4.0000 [+4.0000, +4.0000] px²" in px and "| behind | 4 |" in px
    # one unit: one row per pair, the unit in the title
    same = paired_table("A", [_rows([0.9, 0.8], [0.1, 0.2], [5, 5])], [("B", [_rows([0.9, 0.8], [0.1, 0.2], [5, 5])])])
    assert len(same.splitlines()) == 3


def test_stability_is_not_paired_across_units() -> None:
    """The same clips scored with a pixel spacing by one evaluation and without by the other (two
    manifests): the old table subtracted a px² stability error from a mm² one."""
    first = _rows([0.9] * 4, [0.1] * 4, [10] * 4)
    other = _rows([0.8] * 4, [3.0] * 4, [10] * 4)
    for r in first.values():
        r["units"] = "mm"
    for i, r in enumerate(other.values()):
        r["units"] = "px" if i < 2 else "mm"
    row = paired_table("A", [first], [("B", [other])]).splitlines()[2]
    assert "+0.1000" in row and "-2.9000" not in row  # the Dice difference stays; no mm² - px² figure
    assert "n/a (2 clips scored in mm² by one and px² by the other, e.g. c0)" in row
    # the same units on both sides: the difference as before
    for r in other.values():
        r["units"] = "mm"
    assert "-2.9000" in paired_table("A", [first], [("B", [other])]).splitlines()[2]


def test_evaluations_of_different_clips_still_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model's val and test evaluations: the old compare failed as a whole ("the two evaluations
    have no clip in common", exit 2) and never said that the two rows were different splits."""
    val = _write_eval(tmp_path / "val", minimal_metrics(split="val"))
    test = _write_eval(
        tmp_path / "test",
        minimal_metrics(split="test"),
        clips="clip_id,participant_id,n_frames,dice_mean,stability_error\nc9,p9,2,0.7,0.1\n",
    )
    out = tmp_path / "table.md"
    code, err = _compare(monkeypatch, capsys, f"V={val}", f"T={test}", "--out", str(out))
    assert code == 0, err
    table = out.read_text()
    assert "| V − T | n/a (no clip in common) | | | | 0 |" in table
    assert "Note: these evaluations scored different splits (V: val, T: test)" in table
    # the same split (or evaluations that do not say): no note
    from ultramn.evaluate.compare import split_note

    assert split_note([("A", minimal_metrics(split="test")), ("B", minimal_metrics(split="test")), ("C", minimal_metrics())]) == ""


def test_an_unusable_out_is_one_error_line_before_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old compare printed the whole table, then ``error: [Errno 21] Is a directory`` (or
    ``[Errno 17] File exists`` for a path under a file)."""
    a = _write_eval(tmp_path / "a", minimal_metrics())
    b = _write_eval(tmp_path / "b", minimal_metrics())
    note = tmp_path / "note.txt"
    note.write_text("x")
    from ultramn.cli import main

    for out, why in ((a, f"--out {a}: it is a folder; give a file name"), (note / "t.md", f"{note} is a file, not a folder")):
        monkeypatch.setattr(sys, "argv", ["ultramn", "compare", f"A={a}", f"B={b}", "--out", str(out)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        printed = capsys.readouterr()
        assert exit_info.value.code == 2 and printed.err.startswith("error: ") and why in printed.err, printed.err
        assert len(printed.err.strip().splitlines()) == 1 and printed.out == ""  # no table before the error
    code, _ = _compare(monkeypatch, capsys, f"A={a}", f"B={b}", "--out", str(tmp_path / "new" / "t.md"))
    assert code == 0 and (tmp_path / "new" / "t.md").read_text().startswith("| model |")


def test_the_reported_csa_error_is_a_column_and_older_evaluations_show_n_a(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CSA the gateway reports (``csa_reported_abs_error_*``): the old table left it out; an
    evaluation written before the key existed still compares, its cell ``n/a``."""
    ci = {"estimate": 0.5, "low": 0.25, "high": 0.75, "n_participants": 3}
    new = minimal_metrics(csa_reported_abs_error_mm2_median=0.5, csa_reported_abs_error_mm2_median_ci=ci)
    table = comparison_table([("new", new), ("old", minimal_metrics())])
    head, _, row_new, row_old = table.splitlines()
    columns = [c.strip() for c in head.strip("|").split("|")]
    assert "reported CSA abs error median (mm²)" in columns
    at = columns.index("reported CSA abs error median (mm²)")
    assert [c.strip() for c in row_new.strip("|").split("|")][at] == "0.50 [0.25, 0.75]"
    assert [c.strip() for c in row_old.strip("|").split("|")][at] == "n/a"
    px = comparison_table([("px", minimal_metrics("px", csa_reported_abs_error_px2_median=7.0))])
    assert "reported CSA abs error median (px²)" in px and "| 7.00 |" in px
    # through the command, and a key that is not a number is refused like the others
    a = _write_eval(tmp_path / "a", new)
    b = _write_eval(tmp_path / "b", minimal_metrics())
    assert _compare(monkeypatch, capsys, f"A={a}", f"B={b}")[0] == 0
    bad = _write_eval(tmp_path / "bad", minimal_metrics(csa_reported_abs_error_mm2_median="low"))
    code, err = _compare(monkeypatch, capsys, f"A={a}", f"B={bad}")
    assert code == 2 and "csa_reported_abs_error_mm2_median is 'low'" in err


def test_replicate_runs_in_different_units_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs of one model, one scored with pixel spacings and one without: the old compare
    averaged each clip's mm² and px² stability errors into one number."""
    head = "clip_id,participant_id,units,n_frames,dice_mean,stability_error\n"
    run1 = _write_eval(tmp_path / "r1", minimal_metrics(), clips=head + "c0,p0,mm,2,0.8,0.1\nc1,p1,mm,2,0.8,0.1\n")
    run2 = _write_eval(tmp_path / "r2", minimal_metrics(), clips=head + "c0,p0,px,2,0.8,30\nc1,p1,mm,2,0.8,0.2\n")
    other = _write_eval(tmp_path / "o", minimal_metrics(), clips=head + "c0,p0,mm,2,0.7,0.1\nc1,p1,mm,2,0.7,0.1\n")
    code, err = _compare(monkeypatch, capsys, f"A={run1},{run2}", f"B={other}")
    assert code == 2 and err.startswith("error: A: replicate runs scored 1 clip(s) in different units") and "e.g. c0" in err, err
    run3 = _write_eval(tmp_path / "r3", minimal_metrics(), clips=head + "c0,p0,mm,2,0.8,0.3\nc1,p1,mm,2,0.8,0.2\n")
    assert _compare(monkeypatch, capsys, f"A={run1},{run3}", f"B={other}")[0] == 0


def test_one_folder_given_twice_as_replicate_runs_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``A=run,run`` was taken as two replicate runs: a run-to-run spread of 0 from one run."""
    run = _write_eval(tmp_path / "r1", minimal_metrics())
    other = _write_eval(tmp_path / "o", minimal_metrics())
    for spelling in (f"A={run},{run}", f"A={run},{tmp_path / '.' / 'r1'}/"):
        code, err = _compare(monkeypatch, capsys, spelling, f"B={other}")
        assert code == 2 and err.startswith("error: A: ") and "is given twice; replicate runs are different evaluation folders" in err, err
    assert _compare(monkeypatch, capsys, f"A={run}", f"B={run}")[0] == 0  # one run under two names still compares


def test_a_first_model_without_clips_csv_says_why_there_is_no_paired_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old compare silently left the paired table out."""
    from ultramn.cli import main

    a = _write_eval(tmp_path / "a", minimal_metrics(), clips=None)
    b = _write_eval(tmp_path / "b", minimal_metrics())
    monkeypatch.setattr(sys, "argv", ["ultramn", "compare", f"A={a}", f"B={b}"])
    main()
    assert "No paired differences: A has no clips.csv" in capsys.readouterr().out
