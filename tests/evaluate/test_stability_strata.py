"""Temporal stability stratified by view, plane and quality (``metrics.json`` of ``ultramn evaluate``)."""

import pytest

from ultramn.evaluate.runner import stability_strata


def _clip(i: int, plane: str | None, quality: str | None, pred: float, gt: float) -> dict[str, object]:
    return {
        "clip_id": f"c{i}",
        "participant_id": f"p{i % 3}",
        "plane": plane,
        "quality": quality,
        "stability_pred": pred,
        "stability_gt": gt,
        "stability_error": abs(pred - gt),
    }


def test_stability_is_stratified_by_view_plane_and_quality() -> None:
    clips = [
        _clip(0, "TW", "good", 0.30, 0.20),
        _clip(1, "TF", "poor", 0.10, 0.10),
        _clip(2, "LW", "good", 0.50, 0.20),
        _clip(3, "LF", "poor", 0.40, 0.60),
        _clip(4, "TW", "poor", 0.25, 0.20),
        _clip(5, "LF", "good", 0.30, 0.30),
    ]
    strata = stability_strata(clips, n_boot=200)
    views = {r["view"]: r for r in strata["by_view"]}
    assert set(views) == {"transverse", "longitudinal"}
    assert views["transverse"]["n"] == 3 and views["transverse"]["stability_error_mean"] == pytest.approx((0.1 + 0.0 + 0.05) / 3)
    assert views["longitudinal"]["stability_error_mean"] == pytest.approx((0.3 + 0.2 + 0.0) / 3)
    ci = views["transverse"]["stability_error_ci"]
    assert ci["low"] <= ci["estimate"] <= ci["high"]
    planes = {r["plane"]: r for r in strata["by_plane"]}
    assert planes["TW"]["n"] == 2 and planes["TW"]["stability_pred_mean"] == pytest.approx(0.275)
    quality = {r["quality"]: r for r in strata["by_quality"]}
    assert quality["good"]["stability_gt_mean"] == pytest.approx((0.2 + 0.2 + 0.3) / 3)


def test_unlabelled_clips_have_no_plane_or_view_strata() -> None:
    clips = [_clip(0, None, None, 0.3, 0.2), _clip(1, None, None, 0.2, 0.2)]
    strata = stability_strata(clips, n_boot=100)
    assert strata == {"by_plane": None, "by_view": None, "by_quality": None}
