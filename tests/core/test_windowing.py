"""Windowing: how clips become windows and how predictions come back to frames."""

import numpy as np
import pytest

from ultramn.windowing import stitch_masks, stitch_planes, window_indices, window_starts


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


def test_stitch_masks_averages_overlaps() -> None:
    n, t = 12, 8
    idx = window_indices(n, t, 4)  # starts 0, 4
    probs = np.zeros((idx.shape[0], t, 2, 2), dtype=np.float32)
    probs[0] = 1.0  # first window says 1 everywhere, second says 0
    out = stitch_masks(probs, idx, n)
    assert out.shape == (n, 2, 2)
    np.testing.assert_allclose(out[:4], 1.0)  # only window 0
    np.testing.assert_allclose(out[4:8], 0.5)  # both windows
    np.testing.assert_allclose(out[8:], 0.0)  # only window 1


def test_stitch_masks_padding_maps_back_to_last_frame() -> None:
    idx = window_indices(2, 4, 2)  # [[0,1,1,1]]
    probs = np.array([[0.2, 0.4, 0.6, 0.8]], dtype=np.float32)[:, :, None, None]
    out = stitch_masks(probs, idx, 2)
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
