"""Tissue textures and primitive shapes on the tissue canvas (echogenicity building blocks).

Everything works on a :class:`Canvas`: a grid in tissue coordinates (millimetres; ``x``
lateral, ``z`` depth below the skin) with square pixels. Textures return ``float32
[Hc, Wc]`` maps; shapes return boolean or float masks of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Canvas:
    """Tissue-coordinate grid: pixel ``(i, j)`` is centred at ``z0_mm + (i+0.5)*spacing``,
    ``x0_mm + (j+0.5)*spacing``."""

    shape: tuple[int, int]
    spacing_mm: float
    z0_mm: float
    x0_mm: float

    @property
    def z(self) -> F32:
        """Depths of the rows, mm: ``[Hc, 1]``."""
        return (self.z0_mm + (np.arange(self.shape[0], dtype=np.float32) + 0.5) * self.spacing_mm)[:, None]

    @property
    def x(self) -> F32:
        """Lateral positions of the columns, mm: ``[1, Wc]``."""
        return (self.x0_mm + (np.arange(self.shape[1], dtype=np.float32) + 0.5) * self.spacing_mm)[None, :]

    def px(self, mm: float) -> float:
        """A length in pixels."""
        return mm / self.spacing_mm


def smooth_noise(rng: np.random.Generator, canvas: Canvas, sigma_z_mm: float, sigma_x_mm: float) -> F32:
    """Gaussian-filtered white noise, zero mean and unit std: ``[Hc, Wc]``."""
    n = rng.standard_normal(canvas.shape, dtype=np.float32)
    out = gaussian_filter(n, (canvas.px(sigma_z_mm), canvas.px(sigma_x_mm)), mode="wrap", truncate=3.0)
    return (out / max(float(out.std()), 1e-6)).astype(np.float32)


def ridge(values: F32, width: float) -> F32:
    """Thin lines where ``values`` crosses zero: ``exp(-(v/width)^2)`` in [0, 1]."""
    return np.exp(-((values / width) ** 2)).astype(np.float32)


def stripes(coord_mm: F32, spacing_mm: float, duty: float) -> F32:
    """Periodic thin lines along ``coord_mm`` (lines of width ``duty*spacing``): [0, 1]."""
    phase = np.cos(2 * np.pi * coord_mm / spacing_mm)
    return np.clip((phase - np.cos(np.pi * duty)) / (1 - np.cos(np.pi * duty)), 0, 1).astype(np.float32)


def ellipse_radius(canvas: Canvas, cx: float, cz: float, a: float, b: float, angle_rad: float = 0.0) -> F32:
    """Normalised elliptic radius (1 on the ellipse with semi-axes ``a`` lateral, ``b`` axial)."""
    dx = canvas.x - cx
    dz = canvas.z - cz
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    u = dx * c + dz * s
    v = -dx * s + dz * c
    return np.sqrt((u / a) ** 2 + (v / b) ** 2).astype(np.float32)


def lumpy_radius(canvas: Canvas, cx: float, cz: float, a: float, b: float, harmonics: tuple[float, ...], phases: tuple[float, ...]) -> F32:
    """Elliptic radius with a wobbly outline: ``r / (1 + sum_k h_k cos((k+2) theta + p_k))``."""
    dx = (canvas.x - cx) / a
    dz = (canvas.z - cz) / b
    theta = np.arctan2(dz, dx)
    wobble = np.ones_like(theta)
    for k, (h, p) in enumerate(zip(harmonics, phases, strict=True)):
        wobble = wobble + h * np.cos((k + 2) * theta + p)
    return (np.sqrt(dx**2 + dz**2) / wobble).astype(np.float32)


def muscle_transverse(rng: np.random.Generator, canvas: Canvas, base: float, septa: float, cell_mm: float) -> F32:
    """Muscle cut across: dark with bright speckled septa ("starry sky")."""
    net = ridge(smooth_noise(rng, canvas, cell_mm, cell_mm), 0.16)
    keep = np.clip(smooth_noise(rng, canvas, 0.4 * cell_mm, 0.4 * cell_mm) + 0.3, 0, 1.5)
    dots = np.clip(smooth_noise(rng, canvas, 0.08, 0.1) - 1.6, 0, None)
    return (base + septa * net * keep + 0.8 * septa * dots).astype(np.float32)


def muscle_longitudinal(rng: np.random.Generator, canvas: Canvas, base: float, septa: float, angle_rad: float, spacing_mm: float) -> F32:
    """Muscle along its fibres: oblique bright perimysium lines at ``angle_rad`` (pennate)."""
    perp = -canvas.x * np.sin(angle_rad) + canvas.z * np.cos(angle_rad)
    perp = perp + 0.25 * spacing_mm * smooth_noise(rng, canvas, 1.0, 2.0)
    lines = stripes(perp, spacing_mm, 0.22)
    frag = np.clip(smooth_noise(rng, canvas, 0.3, 1.2) + 0.6, 0, 1.3)
    return (base + septa * lines * frag).astype(np.float32)


def fat(rng: np.random.Generator, canvas: Canvas, base: float, septa: float) -> F32:
    """Subcutaneous fat: hypoechoic lobules with thin, mostly horizontal bright septa."""
    net = ridge(smooth_noise(rng, canvas, 0.35, 1.6), 0.18)
    return (base + septa * net).astype(np.float32)


def fibrillar(rng: np.random.Generator, canvas: Canvas, base: float, contrast: float, spacing_mm: float) -> F32:
    """Horizontal tightly packed bright lines (tendon or nerve along its length)."""
    z = canvas.z + 0.3 * spacing_mm * smooth_noise(rng, canvas, 0.5, 3.0)
    lines = stripes(z, spacing_mm, 0.45)
    frag = np.clip(smooth_noise(rng, canvas, 0.15, 1.5) * 0.4 + 0.8, 0.2, 1.2)
    return (base + contrast * lines * frag).astype(np.float32)


def punctate(rng: np.random.Generator, canvas: Canvas, base: float, contrast: float) -> F32:
    """Tendon cut across: fine bright dots (fibre bundles seen end-on)."""
    dots = np.clip(smooth_noise(rng, canvas, 0.09, 0.09), -1.0, 2.5)
    return (base + contrast * (0.5 + 0.35 * dots)).astype(np.float32)
