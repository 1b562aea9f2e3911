"""B-mode formation: tissue scatterers x echogenicity -> PSF -> envelope -> log -> uint8.

The complex scatterer field belongs to the tissue (it lives on the tissue canvas), so it is
warped with the tissue: moving tissue moves its speckle. Two independent fields ``A`` and
``B`` are mixed as ``cos(theta) A + sin(theta) B`` with ``theta`` drifting a little every
frame, which keeps the field's statistics and gives adjacent frames a correlation of
``cos(dtheta)`` (slightly below 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from ultramn.data.synth.config import RenderConstants
from ultramn.data.synth.psf import PsfBank
from ultramn.data.synth.quality import QualityParams, contact_profile
from ultramn.data.synth.tissue import Canvas

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class AcquisitionParams:
    """One clip's scanner settings (mm, dB, frames/s)."""

    depth_mm: float
    pixel_spacing_mm: float
    """``depth_mm / H``; pixels are square."""
    gain_db: float
    dynamic_range_db: float
    tgc_compensation: float
    grey_gamma: float
    psf_variant: int
    fps: float
    n_frames: int
    nerve_offset_mm: float
    """The nerve's lateral position relative to the image centre at rest."""
    speckle_reduction_px: float
    """Envelope smoothing (Gaussian sigma, px) of the scanner's speckle-reduction filter."""
    quality: QualityParams


def scatterer_fields(rng: np.random.Generator, canvas: Canvas, presmooth_px: float) -> tuple[C64, C64]:
    """Two independent complex scatterer fields on the canvas, unit mean power: ``[Hc, Wc]``.

    A light Gaussian pre-smoothing (``presmooth_px``) keeps bilinear warping from
    modulating the speckle's power at sub-pixel shifts.
    """
    h, w = canvas.shape
    fz = scipy.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = scipy.fft.fftfreq(w).astype(np.float32)[None, :]
    gauss = np.exp(-2 * (np.pi * presmooth_px) ** 2 * (fz**2 + fx**2)).astype(np.float32)
    out = []
    for _ in range(2):
        n = (rng.standard_normal((h, w), dtype=np.float32) + 1j * rng.standard_normal((h, w), dtype=np.float32)).astype(np.complex64)
        f = scipy.fft.ifft2(scipy.fft.fft2(n) * gauss).astype(np.complex64)
        f /= np.float32(np.sqrt(np.mean(np.abs(f) ** 2)))
        out.append(f)
    return out[0], out[1]


def bilinear_gather(stack: F32, canvas_shape: tuple[int, int], rows: F32, cols: F32, nearest: F32 | None = None) -> tuple[F32, F32 | None]:
    """Sample canvas maps at ``(rows, cols)`` (``[H, W]``, canvas pixel units; clamped).

    ``stack`` (``[C, Hc*Wc]``, row-major per channel) is interpolated bilinearly and
    ``nearest`` (``[D, Hc*Wc]``, optional) by nearest neighbour; returns ``([C, H, W],
    [D, H, W] or None)``.
    """
    hc, wc = canvas_shape
    r = np.clip(rows, 0, hc - 1.001)
    c = np.clip(cols, 0, wc - 1.001)
    r0 = r.astype(np.int32)
    c0 = c.astype(np.int32)
    fr = (r - r0).ravel()
    fc = (c - c0).ravel()
    idx = (r0 * wc + c0).ravel()
    a = np.take(stack, idx, axis=1)
    b = np.take(stack, idx + 1, axis=1)
    top = a + (b - a) * fc
    a = np.take(stack, idx + wc, axis=1)
    b = np.take(stack, idx + wc + 1, axis=1)
    bot = a + (b - a) * fc
    out = (top + (bot - top) * fr).reshape(stack.shape[0], *rows.shape)
    near = None
    if nearest is not None:
        nidx = idx + (fr >= 0.5) * wc + (fc >= 0.5)
        near = np.take(nearest, nidx, axis=1).reshape(nearest.shape[0], *rows.shape)
    return out, near


def smooth3(img: F32, weight: float) -> F32:
    """Separable 3-tap smoothing ``[w, 1-2w, w]`` along both axes (edges replicated): ``[H, W]``."""
    if weight <= 0:
        return img
    w = np.float32(weight)
    out = img * (1 - 2 * w)
    out[1:] += w * img[:-1]
    out[0] += w * img[0]
    out[:-1] += w * img[1:]
    out[-1] += w * img[-1]
    res = out * (1 - 2 * w)
    res[:, 1:] += w * out[:, :-1]
    res[:, 0] += w * out[:, 0]
    res[:, :-1] += w * out[:, 1:]
    res[:, -1] += w * out[:, -1]
    return res


class BModeFormer:
    """Forms uint8 frames ``[H, W]`` from the warped complex field and attenuation map."""

    def __init__(self, acq: AcquisitionParams, psf: PsfBank, rc: RenderConstants, shape: tuple[int, int]) -> None:
        self.acq = acq
        self.psf = psf
        self.rc = rc
        self.shape = shape
        h, w = shape
        dz = acq.pixel_spacing_mm
        z = (np.arange(h, dtype=np.float32) + 0.5) * dz
        self.dz = np.float32(dz)
        self.tgc = np.exp(rc.background_atten_per_mm * acq.tgc_compensation * z).astype(np.float32)[:, None]
        self.noise_sigma = np.float32(rc.white_level * 10 ** (acq.quality.noise_db / 20) / np.sqrt(2))
        gain = acq.gain_db + acq.quality.gain_error_db
        self.offset_db = np.float32(gain - 20 * np.log10(rc.white_level))
        # 3-tap weight with the variance of a Gaussian of sigma speckle_reduction_px (capped)
        self.smooth_weight = min(0.5 * acq.speckle_reduction_px**2, 0.33)
        self.noise_pad = max(h, w) // 2
        self.noise_pool: C64 = np.zeros((h + self.noise_pad, w + self.noise_pad), np.complex64)

    def seed_noise(self, rng: np.random.Generator) -> None:
        """Draw the clip's electronic-noise pool ``[H+pad, W+pad]`` complex."""
        n = rng.standard_normal((2, *self.noise_pool.shape), dtype=np.float32)
        self.noise_pool = (self.noise_sigma * (n[0] + 1j * n[1])).astype(np.complex64)

    def frame(self, field: C64, atten: F32, frame_idx: int, rng: np.random.Generator, reverb: C64 | None) -> U8:
        """One frame from the warped field (``[H, W]`` complex) and attenuation (``[H, W]`` per mm)."""
        acq = self.acq
        h, w = self.shape
        # round-trip attenuation along each vertical beam line: bone shadows, posterior enhancement
        field = field * np.exp(-np.cumsum(atten, axis=0) * self.dz)
        if reverb is not None:
            field = field + reverb
        iq = self.psf.apply(field.astype(np.complex64))
        iq *= contact_profile(acq.quality, w, frame_idx, acq.fps)
        # electronic noise: a random window of a per-clip noise pool (cheaper than fresh draws)
        oy, ox = (int(v) for v in rng.integers(0, self.noise_pad + 1, size=2))
        iq += self.noise_pool[oy : oy + h, ox : ox + w]
        env = smooth3(np.abs(iq), self.smooth_weight) * self.tgc
        db = 20 * np.log10(np.maximum(env, 1e-6)) + self.offset_db
        dr = np.float32(acq.dynamic_range_db)
        v = np.clip((db + dr) / dr, 0, 1) ** np.float32(acq.grey_gamma)
        return (v * 255 + 0.5).astype(np.uint8)
