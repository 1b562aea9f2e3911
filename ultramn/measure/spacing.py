"""Pixel spacing: the one place that turns a user's spacing into ``(dy, dx)`` in mm/px."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Final

#: Bounds of a plausible pixel size in mm/px. Ultrasound images are about 0.03-0.5 mm/px;
#: a value outside these bounds is a unit slip (cm, m or um taken for mm) or a typo, and
#: would make every area wrong by orders of magnitude. Checked by
#: :func:`pixel_spacing_problem` wherever a spacing enters: requests, CLI options, importers,
#: file headers.
MIN_PIXEL_SPACING_MM: Final[float] = 0.001
MAX_PIXEL_SPACING_MM: Final[float] = 10.0

#: Pixel spacing as given by callers: ``None`` (unknown: results stay in px), one number
#: (isotropic, mm/px) or a pair ``(dy, dx)``: mm per row step and mm per column step
#: (DICOM ``PixelSpacing`` order; ``PhysicalDeltaY``, ``PhysicalDeltaX``).
Spacing = float | Sequence[float] | None


#: x and y spacing that differ by more than this fraction of their mean are "anisotropic":
#: the decoders warn, and a dataset's one ``pixel_spacing_mm`` per clip (their mean) is approximate.
ANISOTROPY_TOLERANCE: Final[float] = 0.05


def is_anisotropic(sx: float, sy: float) -> bool:
    """Whether pixels ``sx`` mm wide and ``sy`` mm tall differ by more than :data:`ANISOTROPY_TOLERANCE`."""
    return abs(sx - sy) > ANISOTROPY_TOLERANCE * (sx + sy) / 2.0


def pixel_spacing_problem(value: float) -> str | None:
    """Why ``value`` (mm/px) is not a usable pixel spacing, or ``None`` when it is one."""
    if not (math.isfinite(value) and MIN_PIXEL_SPACING_MM <= value <= MAX_PIXEL_SPACING_MM):
        return f"must be a pixel size in mm between {MIN_PIXEL_SPACING_MM:g} and {MAX_PIXEL_SPACING_MM:g}, got {value:g}"
    return None


def normalize_spacing(spacing: Spacing) -> tuple[float, float] | None:
    """``(dy, dx)`` in mm/px, or ``None`` when the spacing is unknown.

    Raises ``ValueError`` for a spacing outside the plausible bounds
    (:func:`pixel_spacing_problem`) or a sequence that is not a pair.
    """
    if spacing is None:
        return None
    if isinstance(spacing, numbers.Real):
        pair = (float(spacing), float(spacing))
    else:
        values = [float(v) for v in spacing]  # type: ignore[union-attr]
        if len(values) != 2:
            raise ValueError(f"pixel spacing must be one number or (dy, dx), got {spacing!r}")
        pair = (values[0], values[1])
    for value in pair:
        problem = pixel_spacing_problem(value)
        if problem is not None:
            raise ValueError(f"pixel spacing {problem}")
    return pair
