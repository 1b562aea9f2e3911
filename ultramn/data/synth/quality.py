"""Image quality of a clip: good / fair / poor, and the artefacts that make it so.

A grade sets the electronic noise, the gain error, and the chance and strength of partial
probe contact (a dark vertical band / missing edge) and of reverberation (parallel bright
lines near the skin). Artefacts live in image coordinates (they belong to the probe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ultramn.contract import QUALITY_GRADES
from ultramn.data.synth.config import QualityRanges

F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]


@dataclass(frozen=True)
class QualityParams:
    """A clip's grade and artefact settings (dB, fractions of the width, mm)."""

    grade: str
    noise_db: float
    gain_error_db: float
    contact_side: int
    """0 = no contact loss, -1 = left edge, +1 = right edge."""
    contact_width_frac: float
    contact_residual: float
    reverb_strength: float
    reverb_spacing_mm: float


def sample_quality(rng: np.random.Generator, ranges: QualityRanges, grade: str | None = None) -> QualityParams:
    """Draw a grade (unless given) and its artefacts."""
    if grade is None:
        g = int(rng.choice(len(QUALITY_GRADES), p=np.asarray(ranges.probabilities)))
    else:
        g = QUALITY_GRADES.index(grade)
    u = lambda r: float(rng.uniform(r[0], r[1]))  # noqa: E731
    contact = rng.random() < ranges.contact_probability[g]
    reverb = rng.random() < ranges.reverb_probability[g]
    return QualityParams(
        grade=QUALITY_GRADES[g],
        noise_db=u(ranges.noise_db[g]),
        gain_error_db=u(ranges.gain_error_db[g]) * float(rng.choice([-1.0, 1.0])),
        contact_side=int(rng.choice([-1, 1])) if contact else 0,
        contact_width_frac=u(ranges.contact_width_frac),
        contact_residual=u(ranges.contact_residual[g]),
        reverb_strength=u(ranges.reverb_strength[g]) if reverb else 0.0,
        reverb_spacing_mm=float(rng.uniform(0.8, 2.0)),
    )


def contact_profile(q: QualityParams, width: int, frame: int, fps: float) -> F32:
    """Per-column amplitude factor ``[1, W]``: a dark band where the probe lifts off the skin."""
    if q.contact_side == 0:
        return np.ones((1, width), np.float32)
    wobble = 1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * frame / fps)
    edge = q.contact_width_frac * width * wobble
    cols = np.arange(width, dtype=np.float32)
    dist = cols if q.contact_side < 0 else (width - 1 - cols)
    ramp = np.clip((dist - edge) / max(0.04 * width, 1.0) + 0.5, 0, 1)
    return (q.contact_residual + (1 - q.contact_residual) * ramp)[None, :].astype(np.float32)


def reverberation(q: QualityParams, rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float, skin_level: float) -> C64 | None:
    """A complex image ``[H, W]`` of decaying horizontal echoes repeating the skin line, or ``None``."""
    if q.reverb_strength <= 0:
        return None
    h, w = shape
    z = (np.arange(h, dtype=np.float32) + 0.5) * spacing_mm
    prof = np.zeros(h, np.float32)
    for k in range(1, 6):
        zk = k * q.reverb_spacing_mm
        prof += (0.6**k) * np.exp(-(((z - zk) / (0.5 * spacing_mm + 0.08)) ** 2))
    lateral = 0.7 + 0.3 * np.cos(np.linspace(0, float(rng.uniform(1, 4)) * np.pi, w) + float(rng.uniform(0, 6)))
    phase = rng.uniform(0, 2 * np.pi, size=(h, w)).astype(np.float32)
    amp = q.reverb_strength * skin_level * prof[:, None] * lateral[None, :]
    return (amp * np.exp(1j * phase)).astype(np.complex64)
