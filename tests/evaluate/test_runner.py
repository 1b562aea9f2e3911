"""``ultramn evaluate`` end to end on tiny hand-made datasets with a fake predictor (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ultramn.contract import PLANES
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import ClipRecord, write_manifest
from ultramn.evaluate.predict import ClipPrediction
from ultramn.evaluate.runner import evaluate_dataset, run_predictions

#: the fake model's mask: this square in every frame
PRED_SQUARE = (slice(8, 20), slice(8, 20))


def _predict(frames: npt.NDArray[np.uint8]) -> ClipPrediction:
    """Always the same square and plane TW."""
    probs = np.zeros(frames.shape, np.float32)
    probs[(slice(None), *PRED_SQUARE)] = 1.0
    planes = np.zeros((frames.shape[0], len(PLANES)), np.float32)
    planes[:, 0] = 1.0
    return ClipPrediction(mask_probs=probs, plane_probs=planes)


def _dataset(root: Path, clips: list[dict[str, Any]]) -> Path:
    """Clips whose ground truth is the predicted square shifted down by ``shift`` px, taller in odd frames."""
    records = []
    for c in clips:
        n, h, w = c.get("n_frames", 4), c.get("height", 32), c.get("width", 32)
        masks = np.zeros((n, h, w), np.uint8)
        for i in range(n):
            y0 = 8 + c["shift"]
            masks[i, y0 : y0 + 12 + 2 * (i % 2), 8:20] = 1  # area 144 / 168 px, alternating
        frames = np.random.default_rng(0).integers(0, 255, (n, h, w), dtype=np.uint8)
        write_clip(root / f"clips/{c['id']}.npz", ClipArrays(frames=frames, masks=masks))
        records.append(
            ClipRecord(
                clip_id=c["id"],
                participant_id=c.get("participant", "p0"),
                side="L",
                plane=c.get("plane", ""),
                quality=c.get("quality", ""),
                pixel_spacing_mm=c.get("spacing"),
                fps=20.0,
                n_frames=n,
                height=h,
                width=w,
                split="test",
                source="test",
                file=f"clips/{c['id']}.npz",
            )
        )
    write_manifest(root, records)
    return root


def test_strata_and_stability_never_average_mm_with_px(tmp_path: Path) -> None:
    """Two clips with a pixel spacing of 0.1 mm and one without: the old strata averaged HD95
    in mm with HD95 in px in one "all" row and the stability of all three as "mixed/px2"."""
    root = _dataset(
        tmp_path / "data",
        [
            {"id": "a", "participant": "p0", "plane": "TW", "quality": "good", "shift": 2, "spacing": 0.1},
            {"id": "b", "participant": "p1", "plane": "TW", "quality": "good", "shift": 4, "spacing": 0.1},
            {"id": "c", "participant": "p2", "plane": "TW", "quality": "good", "shift": 6},
        ],
    )
    out = tmp_path / "eval"
    m = evaluate_dataset(root, "test", _predict, out, n_boot=100, progress=False)
    for table in ("by_plane", "by_quality"):
        rows = {(r["units"], r[table.removeprefix("by_")]): r for r in m[table]}
        group = "TW" if table == "by_plane" else "good"
        assert set(rows) == {("mm", "all"), ("mm", group), ("px", "all"), ("px", group)}
        assert rows[("mm", "all")]["n"] == 8 and rows[("px", "all")]["n"] == 4
        assert rows[("mm", "all")]["hd95_mean"] == pytest.approx(m["hd95_mm_mean"])
        assert rows[("px", "all")]["hd95_mean"] == pytest.approx(m["hd95_px_mean"])
        assert rows[("mm", "all")]["csa_abs_error_median"] == pytest.approx(m["csa_abs_error_mm2_median"])
    ts, ts_px = m["temporal_stability"], m["temporal_stability_px"]
    assert ts["units"] == "mm2" and ts["n_clips"] == 2 and ts_px["units"] == "px2" and ts_px["n_clips"] == 1
    # the true area changes by 24 px² between frames: 0.24 mm² at 0.1 mm; never pooled into (0.24 + 0.24 + 24) / 3
    assert ts["gt_mean_abs_delta_csa"] == pytest.approx(0.24) and ts_px["gt_mean_abs_delta_csa"] == pytest.approx(24.0)
    report = (out / "report.md").read_text()
    assert "| plane | units | frames |" in report and "| all | mm / mm² | 8 |" in report and "| all | px / px² | 4 |" in report
    assert "mixed" not in report and "(mm², 2 clips)" in report and "(px², 1 clip)" in report
    assert "| HD95 mean (px, frames without a pixel spacing) |" in report


def test_one_participant_has_no_interval(tmp_path: Path) -> None:
    """The old bootstrap reported ``Dice mean 0.7594 [0.7594, 0.7594]`` for one participant."""
    clips = [{"id": f"c{i}", "participant": "p0", "plane": "TW", "shift": i, "spacing": 0.1} for i in range(3)]
    out = tmp_path / "eval"
    m = evaluate_dataset(_dataset(tmp_path / "data", clips), "test", _predict, out, n_boot=100, progress=False)
    for key in ("dice_mean_ci", "plane_accuracy_ci", "hd95_mm_mean_ci", "csa_abs_error_mm2_median_ci"):
        assert m[key]["low"] is None and m[key]["high"] is None and m[key]["n_participants"] == 1, key
        assert "1 participant" in m[key]["note"]
    assert m["dice_mean_ci"]["estimate"] == pytest.approx(m["dice_mean"])
    assert m["temporal_stability"]["abs_difference_ci"]["low"] is None
    assert m["intervals"].startswith("none: 1 participant")
    assert json.loads((out / "metrics.json").read_text())["dice_mean_ci"]["low"] is None
    report = (out / "report.md").read_text()
    assert f"| Dice mean | {m['dice_mean']:.4f} [n/a, 1 participant] |" in report
    assert "intervals: none: 1 participant" in report
    # two participants: a real interval again
    clips[2]["participant"] = "p1"
    m2 = evaluate_dataset(_dataset(tmp_path / "data2", clips), "test", _predict, tmp_path / "eval2", n_boot=100, progress=False)
    assert m2["dice_mean_ci"]["low"] is not None and m2["intervals"] == "95 % participant bootstrap"
    assert m2["dice_mean_ci"]["low"] < m2["dice_mean_ci"]["high"]


def test_overlay_examples_keep_one_small_frame_per_clip(tmp_path: Path) -> None:
    """The old runner kept every frame, ground truth and prediction of 200 clips for three figures."""
    clips = [{"id": f"c{i}", "shift": i, "n_frames": 9, "height": 40, "width": 1100} for i in range(3)]
    root = _dataset(tmp_path / "data", clips)
    from ultramn.data.manifest import read_manifest

    data = run_predictions(root, read_manifest(root), _predict, progress=False)
    assert set(data.examples) == {"c0", "c1", "c2"}
    for frame, gt, pred in data.examples.values():
        assert frame.ndim == gt.ndim == pred.ndim == 2 and frame.shape == gt.shape == pred.shape
        assert max(frame.shape) <= 512
        assert sum(a.nbytes for a in (frame, gt, pred)) <= 3 * 40 * 1100 // 2
        assert frame.base is None  # a copy: the clip's arrays are not kept alive
        # the middle frame (4 of 9) with its masks, every 3rd pixel (1100 / 512 -> step 3)
        assert gt.sum() == 4 * 4 and pred.sum() == 4 * 4 and not gt[:, 7:].any()


def test_dice_figure_caption_without_plane_or_quality_labels(tmp_path: Path) -> None:
    """The old report captioned the figure "Dice by plane" when there were no plane labels."""
    out = tmp_path / "eval"
    evaluate_dataset(
        _dataset(tmp_path / "data", [{"id": "a", "shift": 1}, {"id": "b", "shift": 3}]), "test", _predict, out, n_boot=100, progress=False
    )
    report = (out / "report.md").read_text()
    assert "Dice by plane" not in report and "![Dice of all frames (no quality or plane labels)](dice_by_quality.png)" in report
    labelled = tmp_path / "eval-planes"
    clips = [{"id": "a", "shift": 1, "plane": "TW"}, {"id": "b", "shift": 3}]
    evaluate_dataset(_dataset(tmp_path / "data-planes", clips), "test", _predict, labelled, n_boot=100, progress=False)
    assert "![Dice by plane](dice_by_quality.png)" in (labelled / "report.md").read_text()


def _predict_with_speck(frames: npt.NDArray[np.uint8]) -> ClipPrediction:
    """The square of :func:`_predict` plus a separate 3 x 3 speck in the corner (9 px, under the nerve threshold)."""
    pred = _predict(frames)
    pred.mask_probs[:, 26:29, 26:29] = 1.0
    return pred


def test_reported_csa_error_scores_the_largest_region_like_the_gateway(tmp_path: Path) -> None:
    """The mask's CSA counts the speck; the CSA the gateway reports (largest region) does not."""
    root = _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "plane": "TW", "shift": 0, "spacing": 0.1, "n_frames": 2}])
    out = tmp_path / "eval"
    m = evaluate_dataset(root, "test", _predict_with_speck, out, n_boot=100, progress=False)
    # truth: 144 then 168 px; prediction: 144 px square + 9 px speck; 0.01 mm² per px
    assert m["csa_abs_error_mm2_median"] == pytest.approx(((153 - 144) + (168 - 153)) / 2 * 0.01)
    assert m["csa_reported_abs_error_mm2_median"] == pytest.approx(((144 - 144) + (168 - 144)) / 2 * 0.01)
    assert m["csa_reported_abs_error_mm2_median_ci"]["estimate"] == pytest.approx(m["csa_reported_abs_error_mm2_median"])
    assert m["csa_reported_abs_error_px2_median"] is None
    report = (out / "report.md").read_text()
    row = "| CSA abs error median, as the gateway reports it (mm²; largest region, 0 without a nerve) |"
    assert f"{row} 0.12 [n/a, 1 participant] |" in report


def test_reported_csa_is_zero_when_the_prediction_is_below_the_nerve_threshold(tmp_path: Path) -> None:
    """A 9 px prediction is "no nerve" for the gateway: its reported CSA error is the whole annotated area."""

    def speck_only(frames: npt.NDArray[np.uint8]) -> ClipPrediction:
        pred = _predict_with_speck(frames)
        pred.mask_probs[(slice(None), *PRED_SQUARE)] = 0.0
        return pred

    root = _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "plane": "TW", "shift": 0, "n_frames": 1}])
    m = evaluate_dataset(root, "test", speck_only, tmp_path / "eval", n_boot=100, progress=False)
    assert m["csa_abs_error_px2_median"] == pytest.approx(144 - 9)
    assert m["csa_reported_abs_error_px2_median"] == pytest.approx(144)


def test_report_counts_one_clip_frame_and_participant_in_the_singular(tmp_path: Path) -> None:
    """The old report read "1 clips, 1 frames, 1 participants"."""
    root = _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "shift": 1, "n_frames": 1}])
    evaluate_dataset(root, "test", _predict, tmp_path / "eval", n_boot=100, progress=False)
    assert "split `test`: 1 clip, 1 frame, 1 participant\n" in (tmp_path / "eval" / "report.md").read_text()
    root2 = _dataset(tmp_path / "data2", [{"id": "a", "participant": "p0", "shift": 1}, {"id": "b", "participant": "p1", "shift": 2}])
    evaluate_dataset(root2, "test", _predict, tmp_path / "eval2", n_boot=100, progress=False)
    assert "split `test`: 2 clips, 8 frames, 2 participants\n" in (tmp_path / "eval2" / "report.md").read_text()


def test_a_reused_out_keeps_no_figure_of_an_earlier_evaluation(tmp_path: Path) -> None:
    """The old report left confusion.png of a plane-labelled evaluation in a folder re-used for
    data without plane labels: a figure of other data beside the new report."""
    out = tmp_path / "eval"
    labelled = _dataset(tmp_path / "planes", [{"id": "a", "participant": "p0", "plane": "TW", "shift": 1}])
    evaluate_dataset(labelled, "test", _predict, out, n_boot=100, progress=False)
    assert (out / "confusion.png").is_file()
    unlabelled = _dataset(tmp_path / "none", [{"id": "b", "participant": "p0", "shift": 1}])
    evaluate_dataset(unlabelled, "test", _predict, out, n_boot=100, progress=False)
    assert not (out / "confusion.png").exists() and "confusion.png" not in (out / "report.md").read_text()
    assert (out / "overlays.png").is_file() and (out / "dice_by_quality.png").is_file()
