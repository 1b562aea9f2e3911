"""Point-spread function of a real linear probe, computed once with ``pymust`` and cached.

The cached profiles are physical (millimetres): the two-way complex base-band axial pulse
and the two-way lateral beam amplitude at a set of depths (fixed transmit focus, dynamic
receive focus). :class:`PsfBank` turns them into FFT kernels on a clip's pixel grid and
applies them to a complex scatterer field with a few blended depth bands.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]

SOUND_SPEED_M_S = 1540.0
CACHE_VERSION = 1


@dataclass(frozen=True)
class PsfVariant:
    """A probe (``pymust.getparam`` name) and its transmit focus depth."""

    probe: str
    tx_focus_mm: float


#: The PSF variants a clip samples from (real linear arrays in pymust's catalogue).
PSF_VARIANTS: tuple[PsfVariant, ...] = (
    PsfVariant("L11-5v", 8.0),
    PsfVariant("L11-5v", 16.0),
    PsfVariant("L12-3v", 10.0),
    PsfVariant("L14-5/38", 12.0),
)

#: Physical sampling of the cached profiles.
PROFILE_DEPTHS_MM: tuple[float, ...] = (2.0, 5.0, 8.0, 12.0, 16.0, 21.0, 27.0, 34.0, 42.0)
PROFILE_STEP_MM = 0.01
LATERAL_HALF_MM = 1.5


@dataclass(frozen=True)
class PsfProfiles:
    """Cached physical PSF: ``axial`` complex64 [Na] on ``axial_mm``; ``lateral`` float32
    [len(depths), Nl] on ``lateral_mm`` (peak-normalised amplitudes)."""

    axial_mm: F32
    axial: C64
    lateral_mm: F32
    depths_mm: F32
    lateral: F32


def cache_dir() -> Path:
    """``$ULTRAMN_CACHE`` or ``~/.cache/ultramn``."""
    env = os.environ.get("ULTRAMN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ultramn"


def _cache_path(variant: PsfVariant) -> Path:
    key = json.dumps(
        {"v": CACHE_VERSION, **asdict(variant), "depths": PROFILE_DEPTHS_MM, "step": PROFILE_STEP_MM, "half": LATERAL_HALF_MM},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = variant.probe.replace("/", "_")
    return cache_dir() / f"psf-{safe}-{digest}.npz"


def _compute_profiles(variant: PsfVariant) -> PsfProfiles:
    """Run pymust: the two-way pulse (axial) and pfield tx x rx beam profiles (lateral)."""
    import pymust
    from scipy.signal import hilbert

    param = pymust.getparam(variant.probe)
    fc = float(param.fc)
    pulse, t = pymust.getpulse(param, 2)
    analytic = hilbert(np.asarray(pulse, dtype=np.float64))
    env = np.abs(analytic)
    t = np.asarray(t, dtype=np.float64)
    t0 = float(np.sum(t * env**2) / np.sum(env**2))
    baseband = analytic * np.exp(-2j * np.pi * fc * t)
    z_pulse_mm = (t - t0) * SOUND_SPEED_M_S / 2 * 1e3
    axial_mm = np.arange(-0.6, 0.6 + 1e-9, PROFILE_STEP_MM)
    axial = np.interp(axial_mm, z_pulse_mm, baseband.real, 0, 0) + 1j * np.interp(axial_mm, z_pulse_mm, baseband.imag, 0, 0)
    axial /= np.abs(axial).max()

    lateral_mm = np.arange(-LATERAL_HALF_MM, LATERAL_HALF_MM + 1e-9, PROFILE_STEP_MM)
    x = lateral_mm * 1e-3
    tx_delays = pymust.txdelay(0.0, variant.tx_focus_mm * 1e-3, param)
    profiles = []
    for depth in PROFILE_DEPTHS_MM:
        z = np.full_like(x, depth * 1e-3)
        tx, _, _ = pymust.pfield(x, np.zeros_like(x), z, tx_delays, param)
        rx_delays = pymust.txdelay(0.0, depth * 1e-3, param)  # dynamic receive focus at this depth
        rx, _, _ = pymust.pfield(x, np.zeros_like(x), z, rx_delays, param)
        two_way = np.ravel(tx) * np.ravel(rx)
        profiles.append(two_way / two_way.max())
    return PsfProfiles(
        axial_mm=axial_mm.astype(np.float32),
        axial=axial.astype(np.complex64),
        lateral_mm=lateral_mm.astype(np.float32),
        depths_mm=np.asarray(PROFILE_DEPTHS_MM, dtype=np.float32),
        lateral=np.asarray(profiles, dtype=np.float32),
    )


def load_profiles(variant: PsfVariant) -> PsfProfiles:
    """The variant's profiles from the cache, computing and storing them on a miss."""
    path = _cache_path(variant)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as d:
                return PsfProfiles(**{k: np.asarray(d[k]) for k in PsfProfiles.__dataclass_fields__})
        except (OSError, KeyError, ValueError):
            pass  # corrupt cache file: recompute below
    prof = _compute_profiles(variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **asdict(prof))
    tmp.replace(path)
    return prof


def warm_cache() -> list[Path]:
    """Compute every variant's profiles once (before worker processes start); their cache files."""
    for v in PSF_VARIANTS:
        load_profiles(v)
    return [_cache_path(v) for v in PSF_VARIANTS]


def _bin_average(values: npt.NDArray[Any], coords_mm: F32, spacing_mm: float, half_px: int) -> npt.NDArray[Any]:
    """Average a finely sampled profile over pixels of ``spacing_mm`` centred on 0: [2*half_px+1]."""
    edges = (np.arange(-half_px, half_px + 2) - 0.5) * spacing_mm
    idx = np.digitize(coords_mm, edges) - 1
    ok = (idx >= 0) & (idx < 2 * half_px + 1)
    out = np.zeros(2 * half_px + 1, dtype=values.dtype)
    np.add.at(out, idx[ok], values[ok])
    counts = np.bincount(idx[ok], minlength=2 * half_px + 1)
    return out / np.maximum(counts, 1)


class PsfBank:
    """FFT kernels of one PSF variant on one pixel grid, blended over depth bands.

    ``shape`` is the frame's ``(H, W)``; ``spacing_mm`` the square pixel size.
    """

    def __init__(self, profiles: PsfProfiles, shape: tuple[int, int], spacing_mm: float, n_bands: int) -> None:
        h, w = shape
        half_ax = max(2, int(np.ceil(0.45 / spacing_mm)))
        half_lat = max(2, int(np.ceil(LATERAL_HALF_MM * 0.8 / spacing_mm)))
        self.shape = shape
        self.padded = (scipy.fft.next_fast_len(h + 2 * half_ax), scipy.fft.next_fast_len(w + 2 * half_lat))
        self.pad = (half_ax, half_lat)
        axial = _bin_average(profiles.axial, profiles.axial_mm, spacing_mm, half_ax)
        depth_total = h * spacing_mm
        centres = (np.arange(n_bands) + 0.5) / n_bands * depth_total
        spectra = []
        for c in centres:
            lat_prof = np.array([np.interp(c, profiles.depths_mm, profiles.lateral[:, i]) for i in range(profiles.lateral.shape[1])])
            lateral = _bin_average(lat_prof.astype(np.float32), profiles.lateral_mm, spacing_mm, half_lat)
            lateral = lateral * np.hanning(2 * half_lat + 3)[1:-1]  # receive apodisation: tame side lobes
            kernel = np.outer(axial, lateral).astype(np.complex64)
            kernel /= np.sqrt(np.sum(np.abs(kernel) ** 2))
            canvas = np.zeros(self.padded, dtype=np.complex64)
            canvas[: kernel.shape[0], : kernel.shape[1]] = kernel
            canvas = np.roll(canvas, (-half_ax, -half_lat), axis=(0, 1))
            spectra.append(scipy.fft.fft2(canvas).astype(np.complex64))
        self.spectra = spectra
        z = (np.arange(h) + 0.5) * spacing_mm
        if n_bands == 1:
            self.weights = [np.ones((h, 1), np.float32)]
        else:
            # hat functions between band centres: weights sum to 1 at every depth
            self.weights = []
            for b in range(n_bands):
                e = np.zeros(n_bands)
                e[b] = 1.0
                self.weights.append(np.interp(z, centres, e).astype(np.float32)[:, None])

    def apply(self, field: C64) -> C64:
        """Convolve a complex ``[H, W]`` field with the depth-dependent PSF: ``[H, W]`` complex64."""
        h, w = self.shape
        pa, pl = self.pad
        buf = np.zeros(self.padded, dtype=np.complex64)
        buf[pa : pa + h, pl : pl + w] = field
        spec = scipy.fft.fft2(buf, overwrite_x=True)
        out = np.zeros((h, w), dtype=np.complex64)
        for kspec, wgt in zip(self.spectra, self.weights, strict=True):
            rows = np.nonzero(wgt[:, 0] > 0)[0]
            conv = scipy.fft.ifft2(spec * kspec, overwrite_x=True)
            r0, r1 = rows[0], rows[-1] + 1
            out[r0:r1] += conv[pa + r0 : pa + r1, pl : pl + w] * wgt[r0:r1]
        return out
