"""Window augmentation: same transform for every frame, binary masks, mirror, determinism."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from ultramn.contract import CONTRACT
from ultramn.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_geometry,
    apply_intensity,
    augment_window,
    sample_params,
)

T, H, W = CONTRACT.window_shape
ALL_ON = AugmentConfig().model_copy(update={k: 1.0 for k in AugmentConfig.model_fields if k.startswith("p_")})
GEOMETRY_ON = ALL_ON.geometry_only()
NO_NOISE = ALL_ON.model_copy(update={"p_speckle": 0.0, "p_noise": 0.0})
MIRROR_ONLY = ALL_ON.geometry_only().model_copy(update={"p_rotate": 0.0, "p_scale": 0.0, "p_translate": 0.0})


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blob_window(static: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``[1,T,H,W]`` frames (textured, off-centre bright ellipse) and its binary mask."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    frames, masks = [], []
    for t in range(T):
        cx, cy = W * 0.3 + (0 if static else 2 * t), H * 0.4
        inside = ((xx - cx) / (W * 0.12)) ** 2 + ((yy - cy) / (H * 0.08)) ** 2 <= 1
        texture = 0.3 + 0.1 * torch.sin(xx / 3) * torch.cos(yy / 5) + 0.2 * (yy / H)
        frames.append(torch.where(inside, torch.full_like(xx, 0.8), texture))
        masks.append(inside.float())
    return torch.stack(frames)[None], torch.stack(masks)[None]


def centroid(mask: torch.Tensor) -> tuple[float, float]:
    """(x, y) of a ``[H,W]`` binary mask."""
    yy, xx = torch.nonzero(mask > 0.5, as_tuple=True)
    return float(xx.float().mean()), float(yy.float().mean())


def test_shapes_dtypes_ranges_and_binary_masks() -> None:
    frames, masks = blob_window(static=False)
    for seed in range(10):
        f, m, mirrored = augment_window(frames, masks, ALL_ON, gen(seed))
        assert f.shape == (1, T, H, W) and f.dtype == torch.float32
        assert m.shape == (1, T, H, W) and m.dtype == torch.float32
        assert isinstance(mirrored, bool)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert float(m.sum()) > 0
        assert float(f.min()) >= 0.0 and float(f.max()) <= 1.0


def test_inputs_not_modified() -> None:
    frames, masks = blob_window()
    f0, m0 = frames.clone(), masks.clone()
    augment_window(frames, masks, ALL_ON, gen(0))
    assert torch.equal(frames, f0) and torch.equal(masks, m0)


@pytest.mark.parametrize("config", [GEOMETRY_ON, NO_NOISE])
def test_static_clip_stays_identical_across_frames(config: AugmentConfig) -> None:
    frames, masks = blob_window(static=True)
    for seed in range(5):
        f, m, _ = augment_window(frames, masks, config, gen(seed))
        assert not torch.equal(f, frames)  # something happened
        for t in range(1, T):
            assert torch.equal(f[0, t], f[0, 0]), (seed, t)
            assert torch.equal(m[0, t], m[0, 0]), (seed, t)


def test_geometry_moves_mask_with_image() -> None:
    frames, masks = blob_window(static=False)
    f, m, _ = augment_window(frames, masks, GEOMETRY_ON, gen(1))
    # the bright ellipse (0.8 in the input) and the warped mask stay aligned in every frame
    for t in range(T):
        inside = f[0, t][m[0, t] > 0.5]
        outside = f[0, t][m[0, t] < 0.5]
        assert float(inside.mean()) > 0.7 and float(outside.mean()) < 0.6


def test_noise_differs_per_frame_and_spares_masks() -> None:
    frames, masks = blob_window(static=True)
    noisy = ALL_ON.intensity_only().model_copy(update={"p_blur": 0.0, "p_gain": 0.0, "p_contrast": 0.0, "p_gamma": 0.0})
    f, m, mirrored = augment_window(frames, masks, noisy, gen(0))
    assert not mirrored and torch.equal(m, masks)
    for t in range(1, T):
        assert not torch.equal(f[0, t], f[0, 0])
    # speckle is mean-preserving, noise zero-mean: the window mean barely moves
    assert abs(float(f.mean()) - float(frames.mean())) < 0.02
    # noise is independent per frame: the frame-to-frame difference is not zero on average
    assert float((f[0, 1] - f[0, 0]).abs().mean()) > 0.005


def test_mirror_flips_image_and_mask_consistently() -> None:
    frames, masks = blob_window(static=False)
    f, m, mirrored = augment_window(frames, masks, MIRROR_ONLY, gen(0))
    assert mirrored
    assert torch.equal(f, torch.flip(frames, dims=(-1,))) and torch.equal(m, torch.flip(masks, dims=(-1,)))
    for t in range(T):
        (x0, y0), (x1, y1) = centroid(masks[0, t]), centroid(m[0, t])
        assert x1 == pytest.approx(W - 1 - x0, abs=1e-4) and y1 == pytest.approx(y0, abs=1e-4)


def test_mirror_inside_affine_equals_flip_then_affine() -> None:
    frames, masks = blob_window()
    rot = AugmentParams(rotate_deg=7.0, scale=1.05, translate_x=0.03)
    rot_m = AugmentParams(mirror=True, rotate_deg=7.0, scale=1.05, translate_x=0.03)
    f1, m1 = apply_geometry(frames, masks, rot_m)
    f2, m2 = apply_geometry(torch.flip(frames, dims=(-1,)), torch.flip(masks, dims=(-1,)), rot)
    torch.testing.assert_close(f1, f2, atol=1e-4, rtol=0)
    assert float((m1 != m2).float().mean()) < 1e-3


def test_affine_directions_and_magnitudes() -> None:
    frames, masks = blob_window()
    x0, y0 = centroid(masks[0, 0])
    area0 = float(masks[0, 0].sum())
    _, m = apply_geometry(frames, masks, AugmentParams(translate_x=0.08, translate_y=-0.05))
    x1, y1 = centroid(m[0, 0])
    assert x1 - x0 == pytest.approx(0.08 * W, abs=0.6) and y1 - y0 == pytest.approx(-0.05 * H, abs=0.6)
    _, m = apply_geometry(frames, masks, AugmentParams(scale=1.1))
    assert float(m[0, 0].sum()) / area0 == pytest.approx(1.21, rel=0.05)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    x2, y2 = centroid(m[0, 0])
    assert x2 - cx == pytest.approx(1.1 * (x0 - cx), abs=0.6) and y2 - cy == pytest.approx(1.1 * (y0 - cy), abs=0.6)
    _, m = apply_geometry(frames, masks, AugmentParams(rotate_deg=10.0))
    assert float(m[0, 0].sum()) / area0 == pytest.approx(1.0, rel=0.05)  # rigid: area kept
    r0 = ((x0 - cx) ** 2 + (y0 - cy) ** 2) ** 0.5
    x3, y3 = centroid(m[0, 0])
    assert ((x3 - cx) ** 2 + (y3 - cy) ** 2) ** 0.5 == pytest.approx(r0, abs=0.6)
    assert (x3, y3) != pytest.approx((x0, y0), abs=1.0)


def test_rotation_is_rigid_on_non_square_windows() -> None:
    h, w = 64, 128
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    disk = (((xx - 70) ** 2 + (yy - 30) ** 2) <= 10**2).float()[None, None].repeat(1, 2, 1, 1)
    _, m = apply_geometry(disk, disk, AugmentParams(rotate_deg=30.0))
    ys, xs = torch.nonzero(m[0, 0] > 0.5, as_tuple=True)
    # a disk stays a disk: equal extents along x and y
    assert float(xs.max() - xs.min()) == pytest.approx(float(ys.max() - ys.min()), abs=1.0)


def test_intensity_parameters_are_frame_independent() -> None:
    frames, _ = blob_window(static=True)
    params = AugmentParams(blur_sigma_px=1.0, gain=1.1, contrast=1.2, gamma=0.8)
    out = apply_intensity(frames, params, gen(0))
    for t in range(1, T):
        assert torch.equal(out[0, t], out[0, 0])
    assert torch.equal(apply_intensity(frames, AugmentParams(), gen(0)), frames)


def test_determinism_same_seed_same_result_other_seed_differs() -> None:
    frames, masks = blob_window(static=False)
    a = augment_window(frames, masks, ALL_ON, gen(42))
    b = augment_window(frames, masks, ALL_ON, gen(42))
    c = augment_window(frames, masks, ALL_ON, gen(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0])
    # defaults: different seeds give different mirror/geometry draws across many windows
    flags = {augment_window(frames, masks, AugmentConfig(), gen(s))[2] for s in range(20)}
    assert flags == {True, False}


def test_switching_one_transform_off_keeps_the_other_draws() -> None:
    p1 = sample_params(ALL_ON, gen(5))
    p2 = sample_params(ALL_ON.model_copy(update={"p_blur": 0.0}), gen(5))
    assert p2.blur_sigma_px == 0.0 and p1.blur_sigma_px > 0.0
    keep = ("mirror", "rotate_deg", "scale", "translate_x", "gain", "contrast", "gamma", "noise_std")
    assert [getattr(p1, k) for k in keep] == [getattr(p2, k) for k in keep]


def test_disabled_is_identity() -> None:
    frames, masks = blob_window()
    f, m, mirrored = augment_window(frames, masks, AugmentConfig(enabled=False), gen(0))
    assert f is frames and m is masks and not mirrored
    assert sample_params(AugmentConfig(enabled=False), gen(0)) == AugmentParams()


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(rotate_deg=(10.0, -10.0))
    with pytest.raises(ValidationError):
        AugmentConfig(p_mirror=1.5)
    with pytest.raises(ValidationError):
        AugmentConfig(scale=(0.0, 1.1))
    with pytest.raises(ValidationError):
        AugmentConfig(bogus=1)  # type: ignore[call-arg]
    cfg = AugmentConfig()
    assert AugmentConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError):
        cfg.p_mirror = 0.0
    with pytest.raises(ValueError):
        augment_window(torch.zeros(T, H, W), torch.zeros(T, H, W), cfg, gen(0))
