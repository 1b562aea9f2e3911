"""The contract and the shared preprocessing functions."""

import numpy as np
import pytest

from ultramn.contract import CONTRACT, PLANES
from ultramn.preprocess import normalize_intensity, resize_frames, resize_masks, resize_probabilities, threshold_resized


def test_contract_is_self_consistent() -> None:
    assert PLANES == ("TW", "TF", "LW", "LF")
    t, h, w = CONTRACT.window_shape
    assert CONTRACT.inputs[0].dims[-3:] == (t, h, w)
    for spec in CONTRACT.outputs:
        assert spec.dims[0] in (len(PLANES), 1)


def test_normalize_intensity_range_and_dtype() -> None:
    x = np.array([[0, 128, 255]], dtype=np.uint8)
    y = normalize_intensity(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    with pytest.raises(TypeError):
        normalize_intensity(x.astype(np.float32))  # type: ignore[arg-type]


def test_resize_keeps_masks_binary_and_area() -> None:
    masks = np.zeros((2, 100, 100), np.uint8)
    masks[:, 20:60, 30:70] = 1
    small = resize_masks(masks, 50, 50)
    assert small.shape == (2, 50, 50)
    assert set(np.unique(small)) <= {0, 1}
    assert abs(int(small[0].sum()) * 4 - 1600) <= 200
    frames = resize_frames(masks * 200, 64, 32)
    assert frames.shape == (2, 64, 32) and frames.dtype == np.uint8


@pytest.mark.parametrize("size", [(96, 72), (32, 48)])  # up- and down-sampling (the model grid is 48x48 here)
def test_threshold_resized_matches_thresholding_the_resized_maps_and_writes_into_a_view(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    probs = rng.random((5, 48, 48)).astype(np.float32)
    h, w = size
    expected = (resize_probabilities(probs, h, w) >= 0.5).astype(np.uint8)
    canvas = np.full((5, h + 10, w + 20), 7, dtype=np.uint8)
    got = threshold_resized(probs, 0.5, out=canvas[:, 4 : 4 + h, 6 : 6 + w])
    assert got.base is not None and np.array_equal(got, expected)
    assert np.array_equal(canvas[:, 4 : 4 + h, 6 : 6 + w], expected)
    assert (canvas[:, :4] == 7).all() and (canvas[:, :, :6] == 7).all()  # nothing outside the view touched
    assert 0 < expected.mean() < 1
    with pytest.raises(ValueError, match="4 probability maps for 5 masks"):
        threshold_resized(probs[:4], 0.5, out=canvas[:, :h, :w])
