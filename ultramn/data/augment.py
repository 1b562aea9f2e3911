"""Window augmentation for training: one random draw per window, applied to every frame.

A window is a pair of CPU tensors ``frames`` ``float32 [1,T,H,W]`` (intensities in
[0, 1], from :func:`ultramn.preprocess.normalize_intensity`) and ``masks``
``float32 [1,T,H,W]`` in {0, 1}. The geometric part (mirror, rotation, scale,
translation) is one affine map, built once and applied with
:func:`torch.nn.functional.grid_sample` to all ``T`` frames (the frames are the channels
of one image, so they share the sampling grid exactly); frames are resampled bilinearly,
masks bilinearly then thresholded at 0.5 so they stay binary. The intensity part (blur,
gain, contrast, gamma) uses the same parameters for every frame too; only the noise
(speckle and Gaussian) is drawn independently per pixel and per frame, like real noise.

Mirroring swaps the arm side (a left view looks like a mirrored right view, DOMAIN.md);
the plane label is unchanged. :func:`augment_window` reports it so the caller can swap
``L`` <-> ``R``.

Every random number comes from the ``torch.Generator`` the caller passes, drawn in a fixed
order, so the same generator state gives the same result.

Speed (CPU of the 2-core development machine, one torch thread as in a DataLoader
worker, contract window ``[1,8,128,128]``, mean over 500 windows, idle machine): about
1.0 ms per window with the default probabilities and about 2.4 ms with every transform
forced on (up to 2x more when the machine is busy). Measure again with
``python -m ultramn.data.augment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator


class AugmentConfig(BaseModel):
    """Probabilities and ranges of the window augmentation.

    Each ``p_*`` is the probability that a transform is applied to a window; each range is
    ``(low, high)`` sampled uniformly. Angles are in degrees, translations in fractions of
    the image width/height, noise levels in intensity units (the [0, 1] scale). Defaults
    are mild, for ultrasound: probes are held roughly upright (small rotations), depth
    settings vary a little (small scale changes), and gain, dynamic range and speckle differ
    between machines.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="master switch: False returns windows unchanged")
    # geometry (one affine map for every frame and the masks)
    p_mirror: float = Field(default=0.5, ge=0, le=1, description="horizontal mirror (swaps side L<->R)")
    p_rotate: float = Field(default=0.5, ge=0, le=1, description="in-plane rotation")
    rotate_deg: tuple[float, float] = Field(default=(-10.0, 10.0), description="rotation angle range, degrees")
    p_scale: float = Field(default=0.5, ge=0, le=1, description="isotropic zoom")
    scale: tuple[float, float] = Field(default=(0.9, 1.1), description="zoom factor range (>1 enlarges)")
    p_translate: float = Field(default=0.5, ge=0, le=1, description="shift")
    translate_frac: tuple[float, float] = Field(default=(-0.08, 0.08), description="shift range, fraction of width/height")
    # intensity (same parameters for every frame)
    p_blur: float = Field(default=0.2, ge=0, le=1, description="Gaussian blur")
    blur_sigma_px: tuple[float, float] = Field(default=(0.3, 1.0), description="blur sigma range, pixels")
    p_gain: float = Field(default=0.5, ge=0, le=1, description="multiplicative gain")
    gain: tuple[float, float] = Field(default=(0.8, 1.2), description="gain factor range")
    p_contrast: float = Field(default=0.3, ge=0, le=1, description="contrast around the window mean")
    contrast: tuple[float, float] = Field(default=(0.8, 1.25), description="contrast factor range")
    p_gamma: float = Field(default=0.3, ge=0, le=1, description="gamma curve x**g (like a changed dynamic range)")
    gamma: tuple[float, float] = Field(default=(0.7, 1.5), description="gamma exponent range")
    # noise (independent per pixel and frame)
    p_speckle: float = Field(default=0.3, ge=0, le=1, description="multiplicative Rayleigh speckle")
    speckle_strength: tuple[float, float] = Field(
        default=(0.05, 0.25), description="blend of a mean-1 Rayleigh field: x * (1 + s * (R - 1))"
    )
    p_noise: float = Field(default=0.3, ge=0, le=1, description="additive Gaussian noise")
    noise_std: tuple[float, float] = Field(default=(0.005, 0.03), description="noise standard deviation range")

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        for name in (
            "rotate_deg",
            "scale",
            "translate_frac",
            "blur_sigma_px",
            "gain",
            "contrast",
            "gamma",
            "speckle_strength",
            "noise_std",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} > high {hi}")
        for name in ("scale", "gain", "contrast", "gamma"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive")
        if self.blur_sigma_px[0] < 0 or self.speckle_strength[0] < 0 or self.noise_std[0] < 0:
            raise ValueError("blur sigma, speckle strength and noise std must be >= 0")
        return self

    def geometry_only(self) -> AugmentConfig:
        """A copy with every intensity and noise transform switched off."""
        return self.model_copy(update={"p_blur": 0.0, "p_gain": 0.0, "p_contrast": 0.0, "p_gamma": 0.0, "p_speckle": 0.0, "p_noise": 0.0})

    def intensity_only(self) -> AugmentConfig:
        """A copy with every geometric transform (mirror included) switched off."""
        return self.model_copy(update={"p_mirror": 0.0, "p_rotate": 0.0, "p_scale": 0.0, "p_translate": 0.0})


@dataclass(frozen=True)
class AugmentParams:
    """One window's drawn parameters (identity values where a transform is off)."""

    mirror: bool = False
    rotate_deg: float = 0.0
    scale: float = 1.0
    translate_x: float = 0.0  # fraction of the width, + moves content right
    translate_y: float = 0.0  # fraction of the height, + moves content down
    blur_sigma_px: float = 0.0
    gain: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    speckle_strength: float = 0.0
    noise_std: float = 0.0

    @property
    def has_affine(self) -> bool:
        """Whether anything beyond a mirror moves pixels."""
        return self.rotate_deg != 0.0 or self.scale != 1.0 or self.translate_x != 0.0 or self.translate_y != 0.0


def _uniform(gen: torch.Generator, rng: tuple[float, float]) -> float:
    u = float(torch.rand((), generator=gen))
    return rng[0] + (rng[1] - rng[0]) * u


def _coin(gen: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=gen)) < p


def sample_params(config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw one window's parameters.

    Always draws the same number of values in the same order (a coin and a value per
    transform), so switching one transform off does not reshuffle the others.
    """
    if not config.enabled:
        return AugmentParams()

    def draw(p: float, rng: tuple[float, float], identity: float) -> float:
        on = _coin(generator, p)
        value = _uniform(generator, rng)
        return value if on else identity

    mirror = _coin(generator, config.p_mirror)
    rotate = draw(config.p_rotate, config.rotate_deg, 0.0)
    scale = draw(config.p_scale, config.scale, 1.0)
    on_t = _coin(generator, config.p_translate)
    tx, ty = _uniform(generator, config.translate_frac), _uniform(generator, config.translate_frac)
    return AugmentParams(
        mirror=mirror,
        rotate_deg=rotate,
        scale=scale,
        translate_x=tx if on_t else 0.0,
        translate_y=ty if on_t else 0.0,
        blur_sigma_px=draw(config.p_blur, config.blur_sigma_px, 0.0),
        gain=draw(config.p_gain, config.gain, 1.0),
        contrast=draw(config.p_contrast, config.contrast, 1.0),
        gamma=draw(config.p_gamma, config.gamma, 1.0),
        speckle_strength=draw(config.p_speckle, config.speckle_strength, 0.0),
        noise_std=draw(config.p_noise, config.noise_std, 0.0),
    )


def affine_theta(params: AugmentParams, height: int, width: int) -> torch.Tensor:
    """The ``float32 [1,2,3]`` matrix for :func:`torch.nn.functional.affine_grid`.

    Content is mirrored first, then scaled and rotated about the image centre, then
    shifted. Built in pixel units so rotations stay rigid on non-square images; maps
    output (normalised, ``align_corners=False``) coordinates to input coordinates.
    """
    a = math.radians(params.rotate_deg)
    c, s = math.cos(a), math.sin(a)
    f = -1.0 if params.mirror else 1.0
    # forward map of content in pixel units: M = R @ S @ Flip
    m = [[params.scale * c * f, -params.scale * s], [params.scale * s * f, params.scale * c]]
    det = m[0][0] * m[1][1] - m[0][1] * m[1][0]
    inv = [[m[1][1] / det, -m[0][1] / det], [-m[1][0] / det, m[0][0] / det]]
    half = (width / 2.0, height / 2.0)  # normalised -> pixel units
    t = (params.translate_x * width, params.translate_y * height)
    theta = [[0.0] * 3 for _ in range(2)]
    for i in range(2):
        for j in range(2):
            theta[i][j] = inv[i][j] * half[j] / half[i]
        theta[i][2] = -(inv[i][0] * t[0] + inv[i][1] * t[1]) / half[i]
    return torch.tensor([theta], dtype=torch.float32)


def apply_geometry(frames: torch.Tensor, masks: torch.Tensor, params: AugmentParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror/rotate/scale/shift ``frames`` and ``masks`` (both ``[1,T,H,W]``) identically.

    Frames: bilinear, zeros outside the image. Masks: bilinear then ``>= 0.5`` (binary).
    A pure mirror is an exact flip (mask centroid ``x -> W-1-x``).
    """
    if not params.has_affine:
        if params.mirror:
            return torch.flip(frames, dims=(-1,)), torch.flip(masks, dims=(-1,))
        return frames, masks
    _, t, h, w = frames.shape
    grid = F.affine_grid(affine_theta(params, h, w), [1, t, h, w], align_corners=False)
    out_f = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_m = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out_f, (out_m >= 0.5).to(masks.dtype)


def gaussian_blur(frames: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of every frame of ``[1,T,H,W]`` (reflect padding)."""
    if sigma_px <= 0:
        return frames
    radius = max(1, math.ceil(3.0 * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    k = k / k.sum()
    _, t, h, w = frames.shape
    y = frames.reshape(t, 1, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect" if min(h, w) > radius else "replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(1, t, h, w)


def apply_intensity(frames: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """Blur, gain, contrast, gamma (same for all frames), then speckle and noise; clamps to [0, 1].

    ``frames``: ``float32 [1,T,H,W]`` in [0, 1]. Noise fields are drawn from ``generator``.
    """
    x = gaussian_blur(frames, params.blur_sigma_px)
    if params.gain != 1.0:
        x = x * params.gain
    if params.contrast != 1.0:
        mean = float(x.double().mean())  # float64: same value whatever the thread count
        x = (x - mean) * params.contrast + mean
    if params.gamma != 1.0:
        x = x.clamp(0.0, 1.0).pow(params.gamma)
    if params.speckle_strength > 0:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype).clamp_min_(1e-7)
        rayleigh = torch.sqrt(-2.0 * torch.log(u)) * (1.0 / math.sqrt(math.pi / 2.0))  # mean 1
        x = x * (1.0 + params.speckle_strength * (rayleigh - 1.0))
    if params.noise_std > 0:
        x = x + params.noise_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if x is frames:
        return frames
    return x.clamp(0.0, 1.0)


def augment_window(
    frames: torch.Tensor, masks: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Augment one window.

    ``frames``: ``float32 [1,T,H,W]`` in [0, 1]; ``masks``: ``float32 [1,T,H,W]`` in {0, 1}.
    Returns ``(frames, masks, mirrored)``, same shapes and dtypes; ``mirrored`` means the
    arm side swaps (L <-> R). Inputs are not modified.
    """
    if frames.ndim != 4 or frames.shape[0] != 1 or masks.shape != frames.shape:
        raise ValueError(f"expected frames and masks [1,T,H,W], got {tuple(frames.shape)} and {tuple(masks.shape)}")
    if not config.enabled:
        return frames, masks, False
    params = sample_params(config, generator)
    frames, masks = apply_geometry(frames, masks, params)
    frames = apply_intensity(frames, params, generator)
    return frames, masks, params.mirror


def _benchmark(n: int = 500) -> None:  # pragma: no cover - manual timing helper
    import time

    from ultramn.contract import CONTRACT

    torch.set_num_threads(1)
    t, h, w = CONTRACT.window_shape
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand((1, t, h, w), generator=gen)
    masks = (torch.rand((1, t, h, w), generator=gen) > 0.5).float()
    always = AugmentConfig().model_copy(update={k: 1.0 for k in AugmentConfig.model_fields if k.startswith("p_")})
    for name, cfg in (("defaults", AugmentConfig()), ("all transforms on", always)):
        for _ in range(20):
            augment_window(frames, masks, cfg, gen)
        start = time.perf_counter()
        for _ in range(n):
            augment_window(frames, masks, cfg, gen)
        ms = (time.perf_counter() - start) / n * 1e3
        print(f"{name}: {ms:.2f} ms per [1,{t},{h},{w}] window (1 thread)")


if __name__ == "__main__":  # pragma: no cover
    _benchmark()
