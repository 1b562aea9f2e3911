"""The contract and the shared preprocessing functions."""

import numpy as np
import pytest

from ultramn.contract import CONTRACT, PLANES
from ultramn.preprocess import normalize_intensity, resize_frames, resize_masks


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
