"""Evaluation metrics and the cluster bootstrap, on hand-made inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ultramn.evaluate.bootstrap import bootstrap_ci, bootstrap_indices
from ultramn.evaluate.metrics import (
    SegmentationConfig,
    assd,
    boundary,
    clip_segmentation_metrics,
    confusion_matrix,
    csa_series,
    dice,
    frame_segmentation_metrics,
    hd95,
    iou,
    mean_abs_delta,
    plane_metrics,
    stratify,
    summarize_segmentation,
    surface_distances,
    temporal_stability,
)
from ultramn.evaluate.report import _strat_table


def square(y: int, x: int, side: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + side, x : x + side] = True
    return m


# --- overlap -------------------------------------------------------------------------


def test_dice_iou_overlapping_squares_exact() -> None:
    a = square(10, 10, 10)  # 100 px
    b = square(15, 12, 10)  # overlap rows 15..19 x cols 12..19 = 5 x 8 = 40 px
    assert (a & b).sum() == 40
    assert dice(a, b) == pytest.approx(2 * 40 / 200)
    assert iou(a, b) == pytest.approx(40 / 160)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, square(40, 40, 5)) == 0.0


# --- surface distances ---------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("spacing", [None, 0.2, (0.3, 0.1)])
def test_line_shifted_by_k_rows_is_exactly_k_dy(k: int, spacing: float | tuple[float, float] | None) -> None:
    """A pure shift of a straight boundary: every surface distance is k * dy."""
    a = np.zeros((32, 40), bool)
    a[10, :] = True
    b = np.roll(a, k, axis=0)
    dy = 1.0 if spacing is None else (spacing if isinstance(spacing, float) else spacing[0])
    sd = surface_distances(a, b, spacing)
    assert sd.hd95 == pytest.approx(k * dy)
    assert sd.assd == pytest.approx(k * dy)
    assert sd.hd == pytest.approx(k * dy)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_square_shifted_by_k(k: int) -> None:
    """Shifted square: HD = k * s exactly; HD95/ASSD match a brute-force pairwise reference."""
    s = 0.25
    a = square(20, 20, 12)
    b = square(20, 20 + k, 12)
    sd = surface_distances(a, b, s)
    assert sd.hd == pytest.approx(k * s)
    pa = np.argwhere(boundary(a)) * s
    pb = np.argwhere(boundary(b)) * s
    d = cdist(pa, pb)
    d_ab, d_ba = d.min(axis=1), d.min(axis=0)
    assert sd.hd95 == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))
    assert sd.assd == pytest.approx(np.concatenate([d_ab, d_ba]).mean())
    assert 0 < sd.assd < k * s
    assert hd95(a, b, s) == sd.hd95 and assd(a, b, s) == sd.assd


def test_square_shifted_diagonally_hd95_exact() -> None:
    # a diagonal shift by (3, 3) px: the farthest boundary pixel (a corner) is 3·√2 px away
    a = square(20, 20, 12)
    b = square(23, 23, 12)
    assert surface_distances(a, b).hd == pytest.approx(3 * math.sqrt(2))


def test_identical_masks_zero_distance() -> None:
    a = square(5, 5, 9)
    sd = surface_distances(a, a, 0.5)
    assert sd.hd95 == 0.0 and sd.assd == 0.0


def test_empty_cases() -> None:
    empty = np.zeros((16, 16), bool)
    a = square(3, 3, 5, (16, 16))
    both = frame_segmentation_metrics(empty, empty, 0.1)
    assert both.case == "both_empty" and both.dice == 1.0 and both.iou == 1.0 and both.hd95 == 0.0 and both.assd == 0.0
    missed = frame_segmentation_metrics(empty, a, 0.1)
    assert missed.case == "pred_empty" and missed.dice == 0.0 and math.isnan(missed.hd95) and math.isnan(missed.assd)
    assert missed.csa_abs_error == pytest.approx(25 * 0.01) and missed.csa_rel_error == pytest.approx(1.0)
    false_det = frame_segmentation_metrics(a, empty, 0.1)
    assert false_det.case == "gt_empty" and false_det.iou == 0.0 and math.isnan(false_det.csa_rel_error)
    capped = frame_segmentation_metrics(a, empty, 0.1, SegmentationConfig(empty_distance_mm=20.0))
    assert capped.hd95 == 20.0 and capped.assd == 20.0
    s = summarize_segmentation([both, missed, false_det, frame_segmentation_metrics(a, a, 0.1)])
    assert s["n"] == 4 and s["n_both_empty"] == 1 and s["n_pred_empty"] == 1 and s["n_gt_empty"] == 1
    assert s["n_both_present"] == 1
    assert s["dice"] == pytest.approx(0.5)
    assert s["hd95"] == pytest.approx(0.0)  # the nans are counted, not averaged


def test_csa_errors_and_clip_metrics() -> None:
    gt = square(10, 10, 10)  # 100 px
    pred = square(10, 10, 11)  # 121 px
    m = frame_segmentation_metrics(pred, gt, spacing=(0.2, 0.1))
    assert m.csa_gt == pytest.approx(100 * 0.02) and m.csa_pred == pytest.approx(121 * 0.02)
    assert m.csa_error == pytest.approx(21 * 0.02) and m.csa_abs_error == pytest.approx(21 * 0.02)
    assert m.csa_rel_error == pytest.approx(0.21)
    under = frame_segmentation_metrics(gt, pred)
    assert under.csa_error == pytest.approx(-21) and under.csa_abs_error == pytest.approx(21)
    stack = clip_segmentation_metrics(np.stack([pred, gt]), np.stack([gt, gt]))
    assert [r.dice for r in stack] == pytest.approx([200 / 221, 1.0])
    with pytest.raises(ValueError):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))


def test_temporal_stability() -> None:
    pred = square(10, 10, 10)
    masks_gt = np.stack([pred] * 4)
    masks_pred = np.stack([pred, square(10, 10, 12), pred, square(10, 10, 12)])
    cp, cg = csa_series(masks_pred, 0.1), csa_series(masks_gt, 0.1)
    t = temporal_stability(cp, cg)
    assert t["pred"] == pytest.approx(44 * 0.01) and t["gt"] == 0.0
    assert t["difference"] == pytest.approx(44 * 0.01)
    assert mean_abs_delta([1.0, np.nan, 3.0, 4.0]) == pytest.approx(1.0)
    assert math.isnan(mean_abs_delta([1.0]))


# --- planes --------------------------------------------------------------------------


def test_plane_metrics_hand_made_confusion() -> None:
    y_true = ["TW"] * 4 + ["TF"] * 3 + ["LW"] * 2 + [None, None]
    y_pred = ["TW", "TW", "TW", "TF", "TF", "TF", "TW", "LW", "LW", "LF", "TW"]
    m = plane_metrics(y_true, y_pred)
    assert m.n == 9 and m.n_unlabelled == 2
    assert m.confusion == ((3, 1, 0, 0), (1, 2, 0, 0), (0, 0, 2, 0), (0, 0, 0, 0))
    assert m.accuracy == pytest.approx(7 / 9)
    assert m.recall == {"TW": pytest.approx(0.75), "TF": pytest.approx(2 / 3), "LW": 1.0, "LF": None}
    assert m.precision["TW"] == pytest.approx(0.75) and m.precision["TF"] == pytest.approx(2 / 3)
    f1_tw, f1_tf, f1_lw = 0.75, 2 / 3, 1.0
    assert m.macro_f1 == pytest.approx((f1_tw + f1_tf + f1_lw) / 3)
    assert m.to_dict()["confusion"][0] == [3, 1, 0, 0]


def test_plane_metrics_predicted_but_absent_plane_scores_zero_f1() -> None:
    m = plane_metrics(["TW", "TW"], ["TW", "LF"])
    assert m.f1["LF"] == 0.0 and m.recall["LF"] is None and m.precision["LF"] == 0.0
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)


def test_plane_metrics_all_unlabelled() -> None:
    m = plane_metrics([None, None], ["TW", "LW"])
    assert m.accuracy is None and m.macro_f1 is None and all(v is None for v in m.recall.values())
    with pytest.raises(ValueError):
        confusion_matrix(["XX"], ["TW"])


# --- tables --------------------------------------------------------------------------


def test_stratify_by_plane_and_quality() -> None:
    records = [
        {"plane": "TW", "quality": "good", "dice": 0.9, "hd95": 1.0},
        {"plane": "TW", "quality": "poor", "dice": 0.5, "hd95": float("nan")},
        {"plane": "TW", "quality": "good", "dice": 0.7, "hd95": 3.0},
        {"plane": "LW", "quality": "good", "dice": 0.8, "hd95": None},
    ]
    rows = stratify(records, "plane", ["dice", "hd95"])
    assert [r["plane"] for r in rows] == ["all", "LW", "TW"]
    tw = rows[2]
    assert tw["n"] == 3 and tw["dice_mean"] == pytest.approx(0.7) and tw["dice_median"] == pytest.approx(0.7)
    assert tw["hd95_n"] == 2 and tw["hd95_mean"] == pytest.approx(2.0)
    assert rows[1]["hd95_mean"] is None and rows[1]["hd95_n"] == 0
    q = {r["quality"]: r for r in stratify(records, "quality", ["dice"], include_all=False)}
    assert set(q) == {"good", "poor"} and q["good"]["dice_median"] == pytest.approx(0.8)
    both = stratify(records, ("plane", "quality"), ["dice"], include_all=False)
    assert [(r["plane"], r["quality"], r["n"]) for r in both] == [("LW", "good", 1), ("TW", "good", 2), ("TW", "poor", 1)]


# --- bootstrap -----------------------------------------------------------------------


def test_bootstrap_contains_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(20), 5)
    values = rng.normal(0.85, 0.05, size=20)[clusters] + rng.normal(0, 0.02, size=100)
    r = bootstrap_ci(values, clusters)
    assert r.low <= r.estimate <= r.high
    assert r.estimate == pytest.approx(values.mean())
    assert r.n_clusters == 20 and r.n_boot == 1000 and r.replicates.shape == (1000,)
    r2 = bootstrap_ci(values, clusters)
    assert (r2.low, r2.high) == (r.low, r.high)
    assert bootstrap_ci(values, clusters, seed=7).low != r.low


def test_bootstrap_narrows_with_more_clusters() -> None:
    rng = np.random.default_rng(2)
    widths = []
    for n in (10, 40, 160):
        clusters = np.repeat(np.arange(n), 3)
        values = rng.normal(0.0, 1.0, size=n)[clusters]
        r = bootstrap_ci(values, clusters)
        widths.append(r.high - r.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 2.5  # ~ sqrt(16) = 4


def test_bootstrap_resamples_clusters_not_rows() -> None:
    """Two participants, 50 identical rows each (values 0 and 1): a replicate can only draw
    whole participants, so its mean is 0, 0.5 or 1. A row bootstrap would give ~0.5 ± 0.07."""
    clusters = np.repeat(["p1", "p2"], 50)
    values = np.repeat([0.0, 1.0], 50)
    r = bootstrap_ci(values, clusters, n_boot=400)
    assert set(np.unique(r.replicates)) <= {0.0, 0.5, 1.0}
    assert r.low == 0.0 and r.high == 1.0
    rows = bootstrap_ci(values, np.arange(100), n_boot=400)
    assert rows.high - rows.low < 0.4


def test_bootstrap_median_callable_and_indices() -> None:
    clusters = np.repeat(np.arange(6), 4)
    values = np.repeat(np.arange(6, dtype=float), 4)
    med = bootstrap_ci(values, clusters, statistic="median", n_boot=300)
    assert med.estimate == pytest.approx(2.5) and med.low <= 2.5 <= med.high
    assert set(np.unique(med.replicates)) <= {v / 2 for v in range(11)}
    mx = bootstrap_ci(values, clusters, statistic=lambda v: float(v.max()), n_boot=300)
    assert mx.estimate == 5.0 and mx.high == 5.0
    # a two-column statistic (plane accuracy) through row indices
    y_true = np.array(["TW", "TW", "LW", "LW", "TF", "TF"])
    y_pred = np.array(["TW", "LW", "LW", "LW", "TF", "TW"])
    acc = bootstrap_indices([0, 0, 1, 1, 2, 2], lambda idx: float(np.mean(y_true[idx] == y_pred[idx])), n_boot=200)
    assert acc.estimate == pytest.approx(4 / 6) and acc.low <= acc.estimate <= acc.high
    # nans dropped (e.g. undefined HD95)
    r = bootstrap_ci([1.0, np.nan, 3.0], ["a", "a", "b"], n_boot=50)
    assert r.n_rows == 2 and r.estimate == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], ["a"], statistic="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], ["a"])


def test_bootstrap_many_participants_gives_a_proper_interval() -> None:
    rng = np.random.default_rng(3)
    clusters = rng.integers(0, 300, size=20000)
    values = rng.random(20000)
    r = bootstrap_ci(values, clusters, n_boot=1000)
    assert r.n_clusters == 300
    assert r.low < r.estimate < r.high
    assert r.high - r.low < 0.05


def test_hd95_is_max_of_directed_percentiles() -> None:
    """Asymmetric pair (small square inside a big one): HD95 = max of the two directed
    95th percentiles (not the percentile of the pooled distances)."""
    big = square(10, 10, 30)
    small = square(22, 22, 4)
    pa, pb = np.argwhere(boundary(small)), np.argwhere(boundary(big))
    d = cdist(pa, pb)
    d_sb, d_bs = d.min(axis=1), d.min(axis=0)
    expected = max(np.percentile(d_sb, 95), np.percentile(d_bs, 95))
    pooled = np.percentile(np.concatenate([d_sb, d_bs]), 95)
    assert expected != pytest.approx(pooled)
    sd = surface_distances(small, big)
    assert sd.hd95 == pytest.approx(expected)
    assert sd.assd == pytest.approx(np.concatenate([d_sb, d_bs]).mean())
    assert surface_distances(big, small).hd95 == pytest.approx(sd.hd95)


def test_report_tables_name_frames_without_a_label_unlabelled_not_all() -> None:
    rows = stratify([{"quality": "good", "dice": 0.9}, {"quality": None, "dice": 0.5}, {"quality": None, "dice": 0.6}], "quality", ["dice"])
    labels = [line.split("|")[1].strip() for line in _strat_table(rows, "quality")[2:]]
    assert labels == ["all", "good", "unlabelled"]
