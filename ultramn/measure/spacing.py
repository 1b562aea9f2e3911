"""Pixel spacing: the one place that turns a user's spacing into ``(dy, dx)`` in mm/px."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

#: Pixel spacing as given by callers: ``None`` (unknown: results stay in px), one number
#: (isotropic, mm/px) or a pair ``(dy, dx)``: mm per row step and mm per column step
#: (DICOM ``PixelSpacing`` order; ``PhysicalDeltaY``, ``PhysicalDeltaX``).
Spacing = float | Sequence[float] | None


def normalize_spacing(spacing: Spacing) -> tuple[float, float] | None:
    """``(dy, dx)`` in mm/px, or ``None`` when the spacing is unknown.

    Raises ``ValueError`` for a non-finite or non-positive spacing or a sequence that is not
    a pair.
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
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f"pixel spacing must be finite and positive, got {spacing!r}")
    return pair
