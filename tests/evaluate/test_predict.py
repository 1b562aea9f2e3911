"""In-process prediction: the stitched mask probabilities go through the temporal filter, planes do not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ultramn.contract import CONTRACT
from ultramn.evaluate.predict import predict_clip
from ultramn.model import build_model
from ultramn.windowing import DEFAULT_TEMPORAL_FILTER, temporal_mean_filter


def test_temporal_filter_applies_to_the_stitched_masks_only() -> None:
    torch.manual_seed(0)
    model = build_model("unet3d", base_width=4, depth=2)
    contract = dataclasses.replace(CONTRACT, height=32, width=32)  # frames at model size: no resize in between
    frames = np.random.default_rng(0).integers(0, 256, (13, 32, 32), dtype=np.uint8)
    raw = predict_clip(model, frames, contract=contract, temporal_filter=1)
    filtered = predict_clip(model, frames, contract=contract, temporal_filter=3)
    assert filtered.mask_probs.shape == (13, 32, 32)
    np.testing.assert_allclose(filtered.mask_probs, temporal_mean_filter(raw.mask_probs, 3), atol=1e-6)
    assert np.abs(filtered.mask_probs - raw.mask_probs).max() > 1e-4  # the filter did something
    np.testing.assert_array_equal(filtered.plane_probs, raw.plane_probs)
    default = predict_clip(model, frames, contract=contract)  # the product default: 5 frames
    np.testing.assert_allclose(default.mask_probs, temporal_mean_filter(raw.mask_probs, DEFAULT_TEMPORAL_FILTER), atol=1e-6)
    assert DEFAULT_TEMPORAL_FILTER == 5


def test_a_stride_of_zero_is_refused_not_taken_for_the_default() -> None:
    model = build_model("unet3d", base_width=4, depth=2)
    frames = np.zeros((12, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="stride"):
        predict_clip(model, frames, contract=dataclasses.replace(CONTRACT, height=32, width=32), stride=0)
