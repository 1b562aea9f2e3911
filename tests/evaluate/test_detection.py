"""Frames where one mask is empty: how many frames HD95/ASSD cover, missed nerves and false
detections in ``ultramn evaluate`` (hand-made masks with known answers), and ``ultramn compare``'s
note on an evaluation that mixes mm and px."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.cli import run_ultramn
from tests.evaluate.test_compare import minimal_metrics
from ultramn.contract import PLANES
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import ClipRecord, write_manifest
from ultramn.evaluate.compare import comparison_table
from ultramn.evaluate.predict import ClipPrediction
from ultramn.evaluate.runner import evaluate_dataset

SQUARE = (slice(8, 20), slice(8, 20))  # 144 px
SPECK = (slice(26, 29), slice(26, 29))  # 9 px: below the gateway's 10 px nerve threshold


def _one_clip(root: Path, gt: npt.NDArray[np.uint8], spacing: float | None = 0.1) -> Path:
    """A dataset of one TW clip (participant p0) with the ground truth ``gt [N, 32, 32]``."""
    n = gt.shape[0]
    frames = np.random.default_rng(0).integers(0, 255, gt.shape, dtype=np.uint8)
    write_clip(root / "clips/a.npz", ClipArrays(frames=frames, masks=gt))
    record = ClipRecord(
        clip_id="a",
        participant_id="p0",
        side="L",
        plane="TW",
        quality="good",
        pixel_spacing_mm=spacing,
        fps=20.0,
        n_frames=n,
        height=32,
        width=32,
        split="test",
        source="test",
        file="clips/a.npz",
    )
    write_manifest(root, [record])
    return root


def _fixed(pred: npt.NDArray[np.uint8]) -> Callable[[npt.NDArray[np.uint8]], ClipPrediction]:
    """A predictor that returns ``pred [N, H, W]`` as its mask and plane TW."""

    def predict(frames: npt.NDArray[np.uint8]) -> ClipPrediction:
        planes = np.zeros((frames.shape[0], len(PLANES)), np.float32)
        planes[:, 0] = 1.0
        return ClipPrediction(mask_probs=pred.astype(np.float32), plane_probs=planes)

    return predict


def _masks(*squares: tuple[slice, slice] | None) -> npt.NDArray[np.uint8]:
    """``uint8 [N, 32, 32]``: frame i marks ``squares[i]`` (none for ``None``)."""
    out = np.zeros((len(squares), 32, 32), np.uint8)
    for i, sq in enumerate(squares):
        if sq is not None:
            out[(i, *sq)] = 1
    return out


def test_one_hit_one_missed_one_false_detection_exact(tmp_path: Path) -> None:
    """Frame 0: nerve in both; frame 1: nerve missed; frame 2: nerve predicted where there is none.
    The old metrics.json gave an HD95 mean without saying it covered 1 frame of 3, and no rates."""
    gt = _masks(SQUARE, SQUARE, None)
    pred = _masks(SQUARE, None, SQUARE)
    out = tmp_path / "eval"
    m = evaluate_dataset(_one_clip(tmp_path / "data", gt), "test", _fixed(pred), out, n_boot=100, progress=False)
    assert m["cases"] == {"both_present": 1, "both_empty": 0, "pred_empty": 1, "gt_empty": 1}
    assert m["hd95_n_frames"] == 1 and m["hd95_mm_n_frames"] == 1 and m["hd95_px_n_frames"] == 0
    assert m["n_frames_px"] == 0
    assert m["hd95_mm_mean"] == 0.0  # the one scored frame matches exactly
    assert m["dice_mean"] == pytest.approx(1 / 3)  # 1, 0, 0: a frame empty in one mask scores 0
    det = m["detection"]
    assert {k: det[k] for k in ("truth_nerve_frames", "missed", "truth_empty_frames", "false_detections")} == {
        "truth_nerve_frames": 2,
        "missed": 1,
        "truth_empty_frames": 1,
        "false_detections": 1,
    }
    assert det["missed_rate"] == 0.5 and det["false_detection_rate"] == 1.0
    assert "reported_area" in det["basis"] and "10 px" in det["basis"]
    # the strata carry the same figures (one clip: the "all" row and the TW row agree)
    for table in ("by_plane", "by_quality"):
        for row in m[table]:
            assert row["detection"]["missed"] == 1 and row["detection"]["false_detections"] == 1, row
            assert row["hd95_n"] == 1
    # metrics.json on disk, the per-frame flag in frames.csv, and the report
    assert json.loads((out / "metrics.json").read_text())["detection"]["missed_rate"] == 0.5
    with (out / "frames.csv").open(newline="") as fh:
        assert [r["case_reported"] for r in csv.DictReader(fh)] == ["both_present", "pred_empty", "gt_empty"]
    report = (out / "report.md").read_text()
    assert "| HD95 / ASSD scored on (frames in mm; see below) | 1 of 3 |" in report
    assert "| missed nerve, as the gateway reports it (of the frames with a nerve in the truth) | 1 of 2 (50.0 %) |" in report
    assert "| false detection, as the gateway reports it (of the frames without a nerve in the truth) | 1 of 1 (100.0 %) |" in report
    assert "1 when both masks are empty, 0 when one is" in report


def test_detection_is_judged_as_the_gateway_reports_a_nerve(tmp_path: Path) -> None:
    """A 9 px speck over a nerve is a mask hit (HD95 defined) but a missed nerve for the gateway;
    a frame empty in both scores HD95 0 and counts among the HD95 frames; rates have their denominators."""
    gt = _masks(SQUARE, SQUARE, None, None)
    pred = _masks(SQUARE, SPECK, SPECK, None)
    m = evaluate_dataset(
        _one_clip(tmp_path / "data", gt, spacing=None), "test", _fixed(pred), tmp_path / "eval", n_boot=100, progress=False
    )
    # masks: hit, hit (the speck), false detection (the speck), both empty
    assert m["cases"] == {"both_present": 2, "both_empty": 1, "pred_empty": 0, "gt_empty": 1}
    assert m["hd95_n_frames"] == 3 and m["hd95_px_n_frames"] == 3 and m["hd95_mm_n_frames"] == 0 and m["n_frames_px"] == 4
    # as reported (no nerve below 10 px): hit, missed, true negative, true negative
    det = m["detection"]
    assert (det["truth_nerve_frames"], det["missed"], det["missed_rate"]) == (2, 1, 0.5)
    assert (det["truth_empty_frames"], det["false_detections"], det["false_detection_rate"]) == (2, 0, 0.0)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| HD95 / ASSD scored on (frames in px; see below) | 3 of 4 |" in report


def test_detection_counts_rates_and_empty_denominators() -> None:
    from ultramn.evaluate.metrics import detection_counts  # new: imported here so the other tests run on older code

    assert detection_counts(["both_present"] * 3 + ["pred_empty"]) == {
        "truth_nerve_frames": 4,
        "missed": 1,
        "missed_rate": 0.25,
        "truth_empty_frames": 0,
        "false_detections": 0,
        "false_detection_rate": None,  # no frame without a nerve: no rate, not 0
    }
    with pytest.raises(ValueError, match="unknown case"):
        detection_counts(["hit"])


def _metrics(**extra: object) -> dict[str, object]:
    """A minimal metrics.json in mm, 10 frames, no temporal stability."""
    return minimal_metrics(**{"n_frames": 10, "temporal_stability": None, **extra})


#: an evaluation with 6 frames in mm and 4 without a pixel spacing (px)
MIXED = _metrics(hd95_px_mean=3.0, csa_abs_error_px2_median=12.0, n_frames_px=4)


def test_compare_says_when_an_evaluation_mixes_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An evaluation with clips in mm and clips in px: the old table showed its mm figures and
    dropped the px ones without a word."""
    folders = []
    for name, m in (("mixed", MIXED), ("plain", _metrics())):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(m))
        folders.append(folder)
    code, err = run_ultramn(monkeypatch, capsys, "compare", f"M={folders[0]}", f"P={folders[1]}", "--out", str(tmp_path / "t.md"))
    assert code == 0, err
    table = (tmp_path / "t.md").read_text()
    assert "\nNote: M mixes units: 4 of its 10 frames have no pixel spacing." in table
    assert "HD95 mean 3.00 px" in table and "CSA abs error median 12.00 px²" in table and table.count("Note:") == 1


def test_units_note_names_only_evaluations_that_mix_units() -> None:
    from ultramn.evaluate.compare import units_note  # new: imported here so the other tests run on older code

    assert units_note([("M", MIXED), ("P", _metrics())]).startswith("\nNote: M mixes units: 4 of its 10 frames")
    # an older metrics.json without n_frames_px still gets the note
    assert "Note: M mixes units: some of its frames have no pixel spacing." in units_note([("M", _metrics(hd95_px_mean=3.0))])
    # all in mm, or all in px (no mm figure to prefer): nothing is dropped, no note
    px_only = {k: v for k, v in _metrics(hd95_px_mean=3.0).items() if not k.startswith(("hd95_mm", "csa_abs_error_mm2"))}
    assert units_note([("A", _metrics()), ("B", px_only)]) == ""


def test_compare_has_detection_columns_and_older_evaluations_show_n_a() -> None:
    det = {
        "basis": "reported",
        "truth_nerve_frames": 8,
        "missed": 2,
        "missed_rate": 0.25,
        "truth_empty_frames": 2,
        "false_detections": 0,
        "false_detection_rate": 0.0,
    }
    table = comparison_table([("new", _metrics(detection=det)), ("old", _metrics())])
    head, _, row_new, row_old = table.splitlines()
    columns = [c.strip() for c in head.strip("|").split("|")]
    missed, false = columns.index("missed nerve (frames, as reported)"), columns.index("false detections (frames, as reported)")
    new_cells = [c.strip() for c in row_new.strip("|").split("|")]
    old_cells = [c.strip() for c in row_old.strip("|").split("|")]
    assert (new_cells[missed], new_cells[false]) == ("2 of 8 (25.0 %)", "0 of 2 (0.0 %)")
    assert (old_cells[missed], old_cells[false]) == ("n/a", "n/a")


def test_a_detection_block_that_is_not_counts_is_refused(tmp_path: Path) -> None:
    from ultramn.evaluate.compare import load_metrics

    (tmp_path / "metrics.json").write_text(json.dumps(_metrics(detection={"missed": "many"})))
    with pytest.raises(ValueError, match="detection is not a block of frame counts and rates"):
        load_metrics(tmp_path)
