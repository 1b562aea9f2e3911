"""ROI parity: on a clip without screen borders the gateway must analyse the whole frame, as
``ultramn evaluate`` (which has no ROI stage) and training do.

A transverse wrist clip has the carpal bones' shadow across it: a dark band between the
superficial tissue (the nerve) and the deep shadow, whose noise gets brighter in the clip's
temporal maximum the more frames there are. The ROI took the largest bright part only, so
from about 20 frames on it kept the deep noise and cut the tissue above it away: the
gateway then found no nerve in any frame while ``ultramn evaluate`` found it in every one.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.pipeline.roi import RoiConfig, find_roi
from tests.gateway.conftest import synth_clip
from tests.gateway.test_accuracy import _embed
from tests.gateway.test_roi import X0, Y0

H = W = 192


@pytest.fixture(scope="module")
def shadowed() -> np.ndarray:
    """24 frames of a TW clip whose bone shadow splits the bright mask in two (seed 1)."""
    clip = synth_clip(n_frames=24, height=H, width=W, seed=1, plane="TW")
    assert clip.masks.any(axis=(1, 2)).all()
    return clip.frames


@pytest.mark.parametrize("n_frames", [1, 2, 8, 24])
def test_a_clip_split_by_a_shadow_keeps_its_whole_frame(shadowed: np.ndarray, n_frames: int) -> None:
    # before the fix: 24 frames -> (0, 103, 192, 192), the nerve (rows ~30-60) outside the box;
    # 1-2 frames -> the deep part cut off at row 85-103 (the image squeezed on its way to the model)
    assert find_roi(shadowed[:n_frames]) == (0, 0, W, H)


def test_a_screen_capture_of_such_a_clip_finds_the_image(shadowed: np.ndarray) -> None:
    x0, y0, x1, y1 = find_roi(_embed(shadowed))
    assert abs(x0 - X0) <= 2 and abs(y0 - Y0) <= 2 and abs(x1 - (X0 + W)) <= 2
    assert y1 >= Y0 + H - 2  # it may reach down through the black rows to the text, as before


def test_a_static_label_over_the_image_columns_is_not_joined(shadowed: np.ndarray) -> None:
    """A filled on-screen label above the image, over its columns: static, so not image."""
    screen = _embed(shadowed)
    screen[:, Y0 - 22 : Y0 - 6, X0 + 20 : X0 + 140] = 200
    x0, y0, x1, _ = find_roi(screen)
    assert abs(y0 - Y0) <= 2 and abs(x0 - X0) <= 2 and abs(x1 - (X0 + W)) <= 2


def test_only_large_moving_parts_over_the_image_columns_are_joined() -> None:
    """A second live panel beside the image, or a small moving blob above it (a cine bar, an
    icon: under ``stacked_part_frac`` of the image), stays out of the box."""
    rng = np.random.default_rng(0)
    frames = np.zeros((8, 200, 200), np.uint8)
    frames[:, 30:150, 10:110] = rng.integers(60, 200, (8, 120, 100), dtype=np.uint8)  # the image, 12000 px
    frames[:, 30:90, 130:190] = rng.integers(60, 200, (8, 60, 60), dtype=np.uint8)  # beside it
    frames[:, 4:14, 40:80] = rng.integers(60, 200, (8, 10, 40), dtype=np.uint8)  # above it, 400 px
    assert RoiConfig().stacked_part_frac * 12000 > 400
    x0, y0, x1, _ = find_roi(frames)
    assert (x0, y0, x1) == (10, 30, 110)
    frames[:, 4:24, 20:100] = rng.integers(60, 200, (8, 20, 80), dtype=np.uint8)  # 1600 px above: image too
    x0, y0, x1, _ = find_roi(frames)
    assert (x0, y0, x1) == (10, 4, 110)


@pytest.mark.parametrize("n_frames", [1, 2, 3])
def test_the_dim_noise_of_a_deep_shadow_does_not_cut_a_still_or_a_short_clip(n_frames: int) -> None:
    """In a still every bright speck counts as static, and over 3 frames the shadow's noise is
    static by chance: it stopped the box's downward extension (row 161-183 of 192, the image
    squeezed on its way to the model: 18 % of the nerve's pixels and 5 % of its CSA changed on
    a 256 x 256 still). On-screen content is bright; that noise stays below ``element_level``."""
    frames = synth_clip(n_frames=8, height=H, width=W, seed=5, plane="TW").frames[:n_frames]
    assert int(frames[:, 170:].max()) < RoiConfig().element_level
    assert find_roi(frames) == (0, 0, W, H)
    # in a screen capture the box still stops at the text line under the image, as the whole clip's does
    assert find_roi(_embed(frames)) == find_roi(_embed(synth_clip(n_frames=8, height=H, width=W, seed=5, plane="TW").frames))
