"""Clip summaries: timeline, clip plane, CSA statistics, excursion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ultramn.contract import PLANES
from ultramn.measure import (
    ClipConfig,
    ClipMeasurement,
    FrameMeasurement,
    MeasureConfig,
    clip_plane,
    excursion,
    frame_planes,
    measure_clip,
    plane_timeline,
    summarize_clip,
)


def one_hot(labels: list[str], p: float = 0.7) -> np.ndarray:
    out = np.full((len(labels), len(PLANES)), (1 - p) / (len(PLANES) - 1))
    for i, lab in enumerate(labels):
        out[i, PLANES.index(lab)] = p
    return out


def square_clip(positions: list[tuple[int, int] | None], side: int = 6, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    masks = np.zeros((len(positions), *shape), np.uint8)
    for i, pos in enumerate(positions):
        if pos is not None:
            x, y = pos
            masks[i, y : y + side, x : x + side] = 1
    return masks


def test_timeline_runs() -> None:
    labels = ["TW", "TW", "TW", "LW", "LW", "TW", "TF"]
    runs = plane_timeline(labels, fps=10.0)
    assert [(r.plane, r.start, r.end) for r in runs] == [("TW", 0, 2), ("LW", 3, 4), ("TW", 5, 5), ("TF", 6, 6)]
    assert runs[1].start_s == pytest.approx(0.3) and runs[1].end_s == pytest.approx(0.5)
    assert [r.n_frames for r in runs] == [3, 2, 1, 1]
    assert plane_timeline(["LF"])[0].start_s is None
    assert plane_timeline([]) == []


def test_frame_planes_and_clip_plane() -> None:
    probs = one_hot(["TW", "TW", "LW"])
    assert frame_planes(probs) == ["TW", "TW", "LW"]
    plane, conf, mean = clip_plane(probs)
    assert plane == "TW"
    assert conf == pytest.approx((0.7 + 0.7 + 0.1) / 3)
    assert sum(mean.values()) == pytest.approx(1.0)
    # mean probabilities, not majority vote: two weak TW frames lose to one confident LW frame
    probs2 = np.array([[0.4, 0.3, 0.3, 0.0], [0.4, 0.3, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0]])
    assert frame_planes(probs2).count("TW") == 2
    assert clip_plane(probs2)[0] == "LW"
    with pytest.raises(ValueError):
        clip_plane(np.ones((3, 3)))


def test_excursion_known_path() -> None:
    # right 3, down 4 (a 3-4-5 step), then back to the start
    track = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    e = excursion(track, unit="mm", fps=2.0)
    assert e is not None
    assert e.path_length == pytest.approx(3 + 4 + 5)
    assert e.range_x == pytest.approx(3) and e.range_y == pytest.approx(4)
    assert e.max_from_first == pytest.approx(5)
    mean = track.mean(axis=0)
    assert e.max_from_mean == pytest.approx(np.hypot(*(track - mean).T).max())
    assert e.mean_speed_per_s == pytest.approx(12 / 1.5)  # 3 steps of 0.5 s: the track spans 1.5 s, not 4 frames' 2 s
    assert excursion(np.zeros((0, 2))) is None


def test_excursion_smoothing_removes_jitter() -> None:
    x = np.zeros(21)
    x[2::4] = 0.5  # isolated one-frame segmentation glitches on a still nerve
    track = np.stack([x, np.zeros_like(x)], axis=1)
    raw = excursion(track)
    smooth = excursion(track, smoothing_frames=3)
    assert raw is not None and smooth is not None
    assert raw.path_length == pytest.approx(5.0)
    assert smooth.path_length == pytest.approx(0.0)


def test_measure_clip_moving_square_with_spacing() -> None:
    # a 6x6 square moving 2 px right per frame, one frame without a nerve
    positions: list[tuple[int, int] | None] = [(10, 20), (12, 20), None, (14, 20), (16, 20)]
    masks = square_clip(positions)
    probs = one_hot(["TW", "TW", "TW", "LW", "LW"], p=0.9)
    frames, clip = measure_clip(masks, probs, fps=25.0, spacing=0.1)
    assert len(frames) == 5 and [f.present for f in frames] == [True, True, False, True, True]
    assert clip.nerve_fraction == pytest.approx(0.8)
    assert clip.duration_s == pytest.approx(0.2)
    assert clip.plane == "TW" and clip.plane_confidence == pytest.approx((3 * 0.9 + 2 * (0.1 / 3)) / 5)
    assert [(r.plane, r.start, r.end) for r in clip.timeline or ()] == [("TW", 0, 2), ("LW", 3, 4)]
    assert clip.csa is not None and clip.csa.unit == "mm2"
    # the two nerve frames the model calls LW are left out of a TW clip's CSA
    assert clip.csa.median == pytest.approx(36 * 0.01) and clip.csa.n_frames == 2 and clip.csa.n_other_view == 2
    assert clip.csa_other_view_frames == 2
    # so is the excursion: the TW nerve frames 0 and 1, 2 px apart
    ex = clip.excursion
    assert ex is not None and ex.unit == "mm" and ex.n_frames == 2
    assert ex.path_length == pytest.approx(0.2) and ex.mean_speed_per_s == pytest.approx(0.2 / (1 / 25.0))
    # a clip all of one view tracks every nerve frame, joining across the frame without one
    _, tw = measure_clip(masks, one_hot(["TW"] * 5, p=0.9), fps=25.0, spacing=0.1)
    ex = tw.excursion
    assert ex is not None and ex.unit == "mm" and ex.n_frames == 4
    assert ex.path_length == pytest.approx(0.6)  # 6 px across the gap, in mm
    assert ex.range_x == pytest.approx(0.6) and ex.range_y == pytest.approx(0.0)
    assert ex.max_from_first == pytest.approx(0.6)
    assert ex.max_from_mean == pytest.approx(0.3)
    assert ex.mean_speed_per_s == pytest.approx(0.6 / (4 / 25.0))  # nerve frames 0..4: 4 intervals at 25 fps
    d = json.loads(json.dumps(clip.to_dict()))
    assert d["timeline"][1] == {"plane": "LW", "start": 3, "end": 4, "start_s": 0.12, "end_s": 0.2}


def test_clip_without_spacing_or_planes_is_in_px() -> None:
    _, clip = measure_clip(square_clip([(5, 5), (5, 9)]))
    assert clip.plane is None and clip.timeline is None and clip.fps is None
    assert clip.csa is not None and clip.csa.unit == "px" and clip.csa.max == 36
    assert clip.excursion is not None and clip.excursion.unit == "px"
    assert clip.excursion.path_length == pytest.approx(4.0)
    assert clip.excursion.mean_speed_per_s is None


def test_clip_without_nerve() -> None:
    _, clip = measure_clip(np.zeros((3, 16, 16), np.uint8), one_hot(["LF"] * 3), fps=30)
    assert clip.nerve_fraction == 0.0 and clip.csa is None and clip.excursion is None
    assert clip.plane == "LF"


def test_summarize_validation() -> None:
    f = FrameMeasurement(present=False, area_px=0)
    with pytest.raises(ValueError):
        summarize_clip([])
    with pytest.raises(ValueError):
        summarize_clip([f, f], one_hot(["TW"]))
    with pytest.raises(ValueError):
        summarize_clip([f], fps=0.0)
    with pytest.raises(ValueError):
        ClipConfig(centroid_smoothing_frames=2)
    assert math.isclose(summarize_clip([f], fps=10).duration_s or 0, 0.1)


def test_csa_of_a_transverse_clip_leaves_out_frames_the_model_calls_longitudinal() -> None:
    """A probe turned mid-clip: a small transverse oval, then a long longitudinal band. The
    band's area is no CSA: a TW clip's CSA figures must come from its TW frames only."""
    masks = np.zeros((6, 40, 60), np.uint8)
    masks[:4, 18:22, 28:32] = 1  # 16 px oval stand-in
    masks[4:, 17:23, 2:58] = 1  # 336 px band
    probs = one_hot(["TW", "TW", "TW", "TW", "LW", "LW"], p=0.9)
    _, clip = measure_clip(masks, probs, fps=10.0)
    assert clip.plane == "TW" and clip.csa is not None
    assert clip.csa.max == 16 and clip.csa.n_frames == 4 and clip.csa.n_other_view == 2
    # a longitudinal clip keeps its band frames and leaves the transverse ones out
    _, band = measure_clip(masks, one_hot(["TW", "LW", "LW", "LW", "LW", "LW"], p=0.9), fps=10.0)
    assert band.plane == "LW" and band.csa is not None and band.csa.n_frames == 5 and band.csa.n_other_view == 1
    # every nerve frame of the other view (LW then LF, TW second in both but first on the mean):
    # no CSA at all, and the count says why
    order = {p: i for i, p in enumerate(PLANES)}
    wavering = np.zeros((2, 4))
    wavering[0, [order["LW"], order["TW"], order["LF"]]] = 0.4, 0.35, 0.25
    wavering[1, [order["LF"], order["TW"], order["LW"]]] = 0.4, 0.35, 0.25
    _, none = measure_clip(masks[4:], wavering, fps=10.0)
    assert none.plane == "TW" and none.csa is None and none.csa_other_view_frames == 2


def test_excursion_of_a_transverse_clip_leaves_out_frames_the_model_calls_longitudinal() -> None:
    """A still nerve, then the probe turned: the band's centroid (image centre) is no position of
    the nerve's cross-section, so it must not count as 1.7 mm of excursion (the CSA rule)."""
    masks = np.zeros((6, 40, 60), np.uint8)
    masks[:4, 20:26, 10:16] = 1  # a still 6x6 nerve, centroid (12.5, 22.5) px
    masks[4:, 17:23, 2:58] = 1  # the band, centroid (29.5, 19.5) px
    probs = one_hot(["TW", "TW", "TW", "TW", "LW", "LW"], p=0.9)
    _, clip = measure_clip(masks, probs, fps=10.0, spacing=0.1)
    ex = clip.excursion
    assert clip.plane == "TW" and ex is not None and ex.unit == "mm"
    assert ex.n_frames == 4
    assert ex.path_length == pytest.approx(0.0) and ex.max_from_first == pytest.approx(0.0)
    assert ex.range_x == pytest.approx(0.0) and ex.range_y == pytest.approx(0.0)
    assert ex.mean_speed_per_s == pytest.approx(0.0)  # over frames 0..3: 3 intervals
    assert clip.nerve_fraction == pytest.approx(1.0)  # the band frames still show a nerve
    # the longitudinal clip tracks its band frames only: nerve frames 1..5, the band still from 4 on
    _, band = measure_clip(masks, one_hot(["TW", "LW", "LW", "LW", "LW", "LW"], p=0.9), fps=10.0, spacing=0.1)
    bx = band.excursion
    assert band.plane == "LW" and bx is not None and bx.n_frames == 5
    step = math.hypot(29.5 - 12.5, 19.5 - 22.5) * 0.1  # 1.726 mm from the oval to the band
    assert bx.path_length == pytest.approx(step) and bx.max_from_first == pytest.approx(step)
    assert bx.mean_speed_per_s == pytest.approx(step / (4 / 10.0))
    # every nerve frame of the other view (LW then LF, TW second in both but first on the mean): no excursion
    order = {p: i for i, p in enumerate(PLANES)}
    wavering = np.zeros((2, 4))
    wavering[0, [order["LW"], order["TW"], order["LF"]]] = 0.4, 0.35, 0.25
    wavering[1, [order["LF"], order["TW"], order["LW"]]] = 0.4, 0.35, 0.25
    _, none = measure_clip(masks[4:], wavering, fps=10.0)
    assert none.plane == "TW" and none.excursion is None and none.csa is None and none.nerve_fraction == 1.0


def test_non_finite_plane_probabilities_are_refused() -> None:
    """np.argmax takes NaN for the maximum: one NaN made its plane the frame's and the clip's
    (a TW clip reported as TF with a null confidence). Such input is an error, not a plane."""
    probs = one_hot(["TW", "TW", "TW"], p=0.9)
    probs[1, PLANES.index("TF")] = np.nan
    f = FrameMeasurement(present=False, area_px=0)
    for call in (lambda: frame_planes(probs), lambda: clip_plane(probs), lambda: summarize_clip([f] * 3, probs)):
        with pytest.raises(ValueError, match=r"finite; frames \[1\]"):
            call()
    probs[1, PLANES.index("TF")] = np.inf
    with pytest.raises(ValueError, match="finite"):
        clip_plane(probs)


def test_to_dict_turns_nested_non_finite_floats_into_none() -> None:
    """``to_dict`` promises JSON: a non-finite float inside a nested dict stayed NaN."""
    clip = ClipMeasurement(
        n_frames=1,
        fps=None,
        duration_s=None,
        nerve_fraction=0.0,
        plane="TW",
        plane_confidence=0.7,
        plane_probs_mean={"TW": 0.7, "TF": math.nan, "LW": 0.1, "LF": math.inf},
    )
    back = json.loads(json.dumps(clip.to_dict(), allow_nan=False))
    assert back["plane_probs_mean"] == {"TW": 0.7, "TF": None, "LW": 0.1, "LF": None}


def test_csa_of_a_transverse_clip_leaves_out_frames_whose_nerve_the_side_cuts() -> None:
    """A probe sliding off the nerve: three whole 36 px sections, then two cut by the right
    side (12 and 6 px). The cut areas are partial sections: out of the CSA and the track."""
    masks = np.zeros((5, 40, 60), np.uint8)
    for i, x in enumerate((20, 30, 40)):
        masks[i, 10:16, x : x + 6] = 1
    masks[3, 10:16, 58:60] = 1  # 12 px at the right edge
    masks[4, 10:16, 59:60] = 1  # 6 px
    small = MeasureConfig(min_area_px=5)
    frames, clip = measure_clip(masks, one_hot(["TW"] * 5, p=0.9), fps=10.0, measure_config=small)
    assert [f.at_side for f in frames] == [False, False, False, True, True]
    assert clip.csa is not None and clip.csa.n_frames == 3 and clip.csa.n_at_side == 2 and not clip.csa.partial
    assert clip.csa.min == clip.csa.max == 36
    assert clip.excursion is not None and clip.excursion.n_frames == 3 and clip.excursion.range_x == pytest.approx(20)
    # every frame cut: all kept (something to report), and the clip says the sections are partial
    _, cut = measure_clip(masks[3:], one_hot(["TW"] * 2, p=0.9), fps=10.0, measure_config=small)
    assert cut.csa is not None and cut.csa.n_frames == 2 and cut.csa.partial and cut.csa.n_at_side == 0
    # a longitudinal band runs across the image: touching both sides is no cut
    band = np.zeros((3, 40, 60), np.uint8)
    band[:, 15:21, :] = 1
    _, lw = measure_clip(band, one_hot(["LW"] * 3, p=0.9), fps=10.0)
    assert lw.csa is not None and lw.csa.n_frames == 3 and lw.csa.n_at_side == 0 and not lw.csa.partial
    # without plane probabilities the view is unknown: nothing is left out
    _, unknown = measure_clip(masks, fps=10.0, measure_config=small)
    assert unknown.csa is not None and unknown.csa.n_frames == 5 and unknown.csa.n_at_side == 0
