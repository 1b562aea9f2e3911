"""Windowing: how clips become windows and how predictions come back to frames."""

import numpy as np
import pytest

from ultramn.windowing import (
    DEFAULT_MIN_SIMILARITY,
    EMPTY_MAP_ENERGY,
    blend_weights,
    check_min_similarity,
    map_similarity,
    stitch_masks,
    stitch_planes,
    temporal_mean_filter,
    window_indices,
    window_starts,
)


@pytest.mark.parametrize(
    ("n", "t", "s", "expected"),
    [
        (1, 8, 4, [0]),
        (5, 8, 4, [0]),
        (8, 8, 4, [0]),
        (9, 8, 4, [0, 1]),
        (16, 8, 4, [0, 4, 8]),
        (17, 8, 4, [0, 4, 8, 9]),
        (20, 8, 8, [0, 8, 12]),
    ],
)
def test_window_starts_cover_every_frame(n: int, t: int, s: int, expected: list[int]) -> None:
    starts = window_starts(n, t, s)
    assert starts == expected
    covered = set()
    for st in starts:
        covered.update(range(st, min(st + t, n)))
    assert covered == set(range(n))


def test_short_clip_is_edge_padded() -> None:
    idx = window_indices(3, 8, 4)
    assert idx.shape == (1, 8)
    assert idx.tolist() == [[0, 1, 2, 2, 2, 2, 2, 2]]
    still = window_indices(1, 8, 4)
    assert still.tolist() == [[0] * 8]


@pytest.mark.parametrize("bad", [(0, 8, 4), (5, 0, 4), (5, 8, 0)])
def test_invalid_arguments(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        window_indices(*bad)


def test_a_stride_longer_than_the_window_is_refused() -> None:
    """Stride 9 on 8-frame windows would leave frames 8, 17, ... without any window."""
    assert window_starts(30, 8, 8) == [0, 8, 16, 22]
    with pytest.raises(ValueError, match="longer than the 8-frame window"):
        window_starts(30, 8, 9)


def test_stitch_masks_averages_overlaps() -> None:
    n, t = 12, 8
    idx = window_indices(n, t, 4)  # starts 0, 4
    probs = np.zeros((idx.shape[0], t, 2, 2), dtype=np.float32)
    probs[0] = 1.0  # first window says 1 everywhere, second says 0
    out = stitch_masks(probs, idx, n, "uniform")
    assert out.shape == (n, 2, 2)
    np.testing.assert_allclose(out[:4], 1.0)  # only window 0
    np.testing.assert_allclose(out[4:8], 0.5)  # both windows
    np.testing.assert_allclose(out[8:], 0.0)  # only window 1


def test_stitch_masks_padding_maps_back_to_last_frame() -> None:
    idx = window_indices(2, 4, 2)  # [[0,1,1,1]]
    probs = np.array([[0.2, 0.4, 0.6, 0.8]], dtype=np.float32)[:, :, None, None]
    out = stitch_masks(probs, idx, 2, "uniform")
    np.testing.assert_allclose(out[:, 0, 0], [0.2, (0.4 + 0.6 + 0.8) / 3], rtol=1e-6)


def test_stitch_planes_mean_of_covering_windows() -> None:
    idx = window_indices(12, 8, 4)
    plane = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=np.float32)
    out = stitch_planes(plane, idx, 12)
    np.testing.assert_allclose(out[0], [1, 0, 0, 0])
    np.testing.assert_allclose(out[5], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(out[11], [0, 1, 0, 0])
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def test_stitch_rejects_mismatched_shapes() -> None:
    idx = window_indices(12, 8, 4)
    with pytest.raises(ValueError):
        stitch_masks(np.zeros((3, 8, 2, 2), np.float32), idx, 12)


def test_blend_weights_favour_the_window_centre() -> None:
    np.testing.assert_allclose(blend_weights(8, "triangular"), [1, 2, 3, 4, 4, 3, 2, 1])
    np.testing.assert_allclose(blend_weights(8, "uniform"), np.ones(8))
    np.testing.assert_allclose(blend_weights(1, "triangular"), [1.0])
    with pytest.raises(ValueError, match="blend must be one of"):
        blend_weights(8, "gaussian")  # type: ignore[arg-type]


def test_triangular_stitch_weighs_each_frame_by_its_window_position() -> None:
    n, t = 12, 8
    idx = window_indices(n, t, 4)  # starts 0, 4: frames 4-7 are positions 4-7 of window 0, 0-3 of window 1
    probs = np.zeros((idx.shape[0], t, 1, 1), dtype=np.float32)
    probs[0] = 1.0
    out = stitch_masks(probs, idx, n, "triangular")[:, 0, 0]
    np.testing.assert_allclose(out[:4], 1.0)
    np.testing.assert_allclose(out[8:], 0.0)
    w = blend_weights(t, "triangular")
    expected = [w[4 + k] / (w[4 + k] + w[k]) for k in range(4)]  # 4/5, 3/5, 2/5, 1/5
    np.testing.assert_allclose(out[4:8], expected, rtol=1e-6)
    # a constant prediction stays that constant under any blend (weights are normalised)
    flat = np.full((idx.shape[0], t, 1, 1), 0.3, dtype=np.float32)
    np.testing.assert_allclose(stitch_masks(flat, idx, n, "triangular"), 0.3, rtol=1e-6)


def test_temporal_mean_filter_spreads_a_spike_and_keeps_edges() -> None:
    """Without the motion gate (0): a one-frame spike spreads evenly over K frames; edge frames
    repeat; K = 1 is the identity."""
    probs = np.zeros((7, 2, 3), np.float32)
    probs[3] = 0.9
    three = temporal_mean_filter(probs, 3, 0.0)
    assert three.dtype == np.float32 and three.shape == probs.shape
    np.testing.assert_allclose(three[:, 0, 0], [0, 0, 0.3, 0.3, 0.3, 0, 0], atol=1e-7)
    five = temporal_mean_filter(probs, 5, 0.0)
    np.testing.assert_allclose(five[:, 1, 2], [0, 0.18, 0.18, 0.18, 0.18, 0.18, 0], atol=1e-7)
    np.testing.assert_array_equal(temporal_mean_filter(probs, 1), probs)
    ramp = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32) / 4
    # edges repeat: the first frame's mean is (0 + 0 + 0.25) / 3, the last (0.75 + 1 + 1) / 3
    np.testing.assert_allclose(temporal_mean_filter(ramp, 3, 0.0)[:, 0, 0], [0.25 / 3, 0.25, 0.5, 0.75, 2.75 / 3], atol=1e-7)
    for gate in (0.0, DEFAULT_MIN_SIMILARITY):
        still = np.full((1, 4, 4), 0.7, np.float32)
        np.testing.assert_array_equal(temporal_mean_filter(still, 5, gate), still)
        constant = np.full((6, 3, 3), 0.4, np.float32)
        np.testing.assert_allclose(temporal_mean_filter(constant, 5, gate), constant, atol=1e-7)


def _disc(shape: tuple[int, int], cx: float, cy: float, r: float, p: float = 0.95) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.where((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r, p, 0.02).astype(np.float32)


def test_motion_gate_keeps_a_sliding_nerve_that_the_plain_mean_smears_away() -> None:
    """A nerve (disc, radius 8 px) moving 6 px per frame, as in a probe slide: the plain 5-frame
    mean leaves little of it above 0.5, the gated mean keeps each frame's own disc."""
    probs = np.stack([_disc((48, 160), 20 + 6 * t, 24, 8) for t in range(20)])
    truth = probs > 0.5
    plain = temporal_mean_filter(probs, 5, 0.0) > 0.5
    gated = temporal_mean_filter(probs, 5) > 0.5

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return float(2 * (a & b).sum() / (a.sum() + b.sum()))

    assert dice(plain[2:-2], truth[2:-2]) < 0.6
    assert dice(gated, truth) == 1.0


def test_motion_gate_still_averages_a_nerve_that_stays() -> None:
    """Boundary jitter and flicker of a nerve that stays in place: every neighbour passes the gate,
    so the gated mean is the plain mean."""
    rng = np.random.default_rng(0)
    probs = np.stack(
        [_disc((40, 40), 20 + rng.uniform(-0.4, 0.4), 20, 7 + rng.uniform(-0.2, 0.2), rng.uniform(0.6, 0.95)) for _ in range(12)]
    )
    np.testing.assert_allclose(temporal_mean_filter(probs, 5), temporal_mean_filter(probs, 5, 0.0), atol=1e-6)


def test_motion_gate_does_not_mix_a_nerve_into_empty_frames() -> None:
    """Frames without a nerve stay without one beside frames with one, and the nerve frames are
    not diluted by the empty ones; the plain mean spreads the nerve into its neighbours."""
    probs = np.zeros((7, 20, 20), np.float32)
    probs[3] = _disc((20, 20), 10, 10, 5)
    gated = temporal_mean_filter(probs, 5)
    np.testing.assert_array_equal(gated, probs)
    plain = temporal_mean_filter(probs, 5, 0.0)
    assert plain[3].max() < probs[3].max() and plain[1].max() > 0


def test_map_similarity_is_cosine_with_empty_maps_handled() -> None:
    nerve = _disc((20, 20), 10, 10, 5).reshape(1, -1)
    empty = np.zeros((1, 400), np.float32)
    faint = 0.3 * nerve  # the same nerve at a lower probability: the same map, shape for shape
    moved = _disc((20, 20), 16, 10, 5).reshape(1, -1)
    flat = np.concatenate([nerve, empty, faint, moved, empty])
    pairs = {(0, 2): 1.0, (2, 0): 1.0, (0, 1): 0.0, (1, 0): 0.0, (1, 4): 1.0}
    for (a, b), expected in pairs.items():
        neighbour = np.arange(5)
        neighbour[a] = b
        assert map_similarity(flat, neighbour)[a] == pytest.approx(expected, abs=1e-6), (a, b)
    neighbour = np.arange(5)
    neighbour[0] = 3
    assert 0.0 < map_similarity(flat, neighbour)[0] < 0.5  # moved by more than half its width
    assert float((0.3 * 0.95) ** 2 * (faint > 0.1).sum()) > EMPTY_MAP_ENERGY  # the faint map is not "empty"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_motion_gate_refuses_values_outside_0_1(bad: object) -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_min_similarity(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        temporal_mean_filter(np.zeros((3, 2, 2), np.float32), 3, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 2, -3, 4])
def test_temporal_mean_filter_refuses_even_or_nonpositive_lengths(bad: int) -> None:
    with pytest.raises(ValueError, match="odd whole number"):
        temporal_mean_filter(np.zeros((3, 2, 2), np.float32), bad)
