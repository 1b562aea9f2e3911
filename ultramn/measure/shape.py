"""Per-frame nerve measurements from a binary mask.

Input: a mask ``bool/uint8 [H, W]`` (foreground != 0; float masks thresholded at 0.5) and
an optional pixel spacing (mm/px; one number or ``(dy, dx)``). Without spacing every mm
field is ``None`` and the unitless shape figures are computed in px.

Definitions (coordinates as in :mod:`ultramn.measure.contour`: ``(x, y)`` px, origin at
the centre of pixel ``[0, 0]``, y down):

- **area**: pixel count (px) and pixel count × ``dy·dx`` (mm²): the CSA.
- **present**: ``area_px >= min_area_px`` (and ``area_mm2 >= min_area_mm2`` when both are
  known). Shape fields are ``None`` for a frame without a nerve.
- **centroid**: mean pixel centre (px); × ``(dx, dy)`` for mm.
- **bbox**: ``(x0, y0, x1, y1)`` px, half-open like numpy slices: ``x1 = last column + 1``,
  so width ``= x1 - x0``.
- **at_side**: the region touches the left or right edge of the mask (``x0 == 0`` or
  ``x1 == W``): in a transverse view the nerve is cut by the image's side, so its area is
  a partial cross-section.
- **perimeter**: length of the sub-pixel boundary (marching squares on the lightly blurred
  mask, see :mod:`~ultramn.measure.contour`), holes included (pinholes the blur closes
  are not); px and mm (the polygon is scaled per axis; on non-square pixels the blur is
  ``contour_sigma_px`` along the coarser axis and as many mm along the finer one,
  :func:`~ultramn.measure.contour.blur_sigma`, so a round nerve measures round whatever
  the pixel grid).
- **circularity**: ``4πA/P²`` with ``A`` the area enclosed by that same boundary (so
  ``<= 1`` by the isoperimetric inequality; ≈ 1 for a disc, π/4 for a square), in mm when
  spacing is known.
- **flattening ratio**: ``major/minor`` axis of the ellipse with the same second moments as
  the mask (``sqrt(λ1/λ2)`` of the covariance of pixel positions, in mm when spacing is
  known). Orientation-free, so a tilted nerve is measured along its own axes; for an
  axis-aligned nerve it equals width/height (DOMAIN: about 2-3.5 at the wrist).
  ``major_axis``/``minor_axis`` are that ellipse's full axis lengths, ``4·sqrt(λ)``.
- **orientation_deg**: angle of the major axis from +x towards +y (down), in ``(-90, 90]``.
- **contour**: outer boundary of the largest component, simplified (Ramer-Douglas-Peucker,
  ``simplify_tolerance_px``), as ``[[x, y], ...]`` px, not closed (first point not repeated).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.measure.contour import (
    as_bool_mask,
    blur_sigma,
    boundary_polygons,
    label_components,
    largest_component,
    polygon_length,
    polygon_signed_area,
    simplify_polygon,
)
from ultramn.measure.spacing import Spacing, normalize_spacing

Point = tuple[float, float]


@dataclass(frozen=True)
class MeasureConfig:
    """Thresholds and options of :func:`measure_frame`.

    - ``min_area_px``: a mask (after component selection) smaller than this is "no nerve".
    - ``min_area_mm2``: optional extra threshold in mm², used only when spacing is known.
    - ``largest_component_only``: measure only the largest connected component (drops
      specks); otherwise all foreground is measured (the contour is still the largest one's).
    - ``connectivity``: 4 or 8, for components.
    - ``contour_sigma_px``: Gaussian blur before tracing the boundary (0 = raw staircase); px
      along the coarser axis of non-square pixels, the same in mm along the finer one.
    - ``simplify_tolerance_px``: Ramer-Douglas-Peucker tolerance of the reported contour.
    - ``decimals``: rounding of the reported contour coordinates.
    """

    min_area_px: int = 10
    min_area_mm2: float | None = None
    largest_component_only: bool = True
    connectivity: int = 8
    contour_sigma_px: float = 1.0
    simplify_tolerance_px: float = 0.5
    decimals: int = 2

    def __post_init__(self) -> None:
        if self.min_area_px < 1:
            raise ValueError("min_area_px must be >= 1")
        if self.connectivity not in (4, 8):
            raise ValueError("connectivity must be 4 or 8")
        if self.contour_sigma_px < 0 or self.simplify_tolerance_px < 0:
            raise ValueError("contour_sigma_px and simplify_tolerance_px must be >= 0")


DEFAULT_MEASURE_CONFIG = MeasureConfig()


@dataclass(frozen=True)
class FrameMeasurement:
    """Measurements of one frame (units in the field names; ``None`` = not available).

    mm fields are ``None`` without pixel spacing; shape fields are ``None`` when
    ``present`` is false. See the module docstring for the definitions.
    """

    present: bool
    area_px: int
    area_mm2: float | None = None
    n_components: int = 0
    centroid_px: Point | None = None
    centroid_mm: Point | None = None
    bbox_px: tuple[int, int, int, int] | None = None
    perimeter_px: float | None = None
    perimeter_mm: float | None = None
    circularity: float | None = None
    flattening_ratio: float | None = None
    major_axis_px: float | None = None
    minor_axis_px: float | None = None
    major_axis_mm: float | None = None
    minor_axis_mm: float | None = None
    orientation_deg: float | None = None
    contour_px: tuple[Point, ...] | None = None
    at_side: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: tuples become lists, non-finite floats become ``None``."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _moments(rows: npt.NDArray[np.float64], cols: npt.NDArray[np.float64], sy: float, sx: float) -> tuple[float, float, float]:
    """``(major, minor, orientation_deg)`` of the equal-moment ellipse of pixel positions.

    Positions are scaled by ``(sx, sy)`` first (mm/px, or 1 for px). Each pixel is treated
    as a uniform unit square (``+1/12`` px² variance per axis) so a single pixel or a
    one-pixel-wide line still has a finite minor axis.
    """
    x = cols * sx
    y = rows * sy
    cxx = float(np.var(x)) + sx * sx / 12.0
    cyy = float(np.var(y)) + sy * sy / 12.0
    cxy = float(np.mean((x - x.mean()) * (y - y.mean())))
    half_tr = 0.5 * (cxx + cyy)
    disc = math.sqrt(max(0.25 * (cxx - cyy) ** 2 + cxy * cxy, 0.0))
    l1, l2 = half_tr + disc, max(half_tr - disc, 0.0)
    theta = 0.5 * math.degrees(math.atan2(2.0 * cxy, cxx - cyy))
    if theta <= -90.0:
        theta += 180.0
    return 4.0 * math.sqrt(l1), 4.0 * math.sqrt(l2), theta


def _nerve_region(
    full: npt.NDArray[np.bool_], sp: tuple[float, float] | None, config: MeasureConfig
) -> tuple[npt.NDArray[np.bool_], int, float | None, bool]:
    """``(region, area_px, area_mm2, present)``: the pixels a frame's measurements describe."""
    sel = largest_component(full, config.connectivity) if config.largest_component_only else full
    area_px = int(sel.sum())
    area_mm2 = area_px * sp[0] * sp[1] if sp is not None else None
    present = area_px >= config.min_area_px
    if present and config.min_area_mm2 is not None and area_mm2 is not None:
        present = area_mm2 >= config.min_area_mm2
    return sel, area_px, area_mm2, present


def reported_area(mask: npt.ArrayLike, spacing: Spacing = None, config: MeasureConfig = DEFAULT_MEASURE_CONFIG) -> float:
    """The CSA :func:`measure_frame` reports for ``mask [H, W]``: mm² (px² without spacing), 0 with no nerve.

    The area of the measured region (the largest component by default) when the frame
    counts as ``present``, else 0: what the gateway's per-frame ``area`` amounts to, as one
    number per frame that :mod:`ultramn.evaluate` can compare with the annotated area.
    """
    sp = normalize_spacing(spacing)
    _, area_px, area_mm2, present = _nerve_region(as_bool_mask(mask), sp, config)
    if not present:
        return 0.0
    return float(area_mm2) if area_mm2 is not None else float(area_px)


def measure_frame(
    mask: npt.ArrayLike,
    spacing: Spacing = None,
    config: MeasureConfig = DEFAULT_MEASURE_CONFIG,
) -> FrameMeasurement:
    """Measure the nerve in one mask ``[H, W]``; ``spacing`` in mm/px (``s`` or ``(dy, dx)``)."""
    sp = normalize_spacing(spacing)
    full = as_bool_mask(mask)
    _, n_comp = label_components(full, config.connectivity)
    sel, area_px, area_mm2, present = _nerve_region(full, sp, config)
    if not present:
        return FrameMeasurement(present=False, area_px=area_px, area_mm2=area_mm2, n_components=n_comp)

    rows_i, cols_i = np.nonzero(sel)
    rows, cols = rows_i.astype(np.float64), cols_i.astype(np.float64)
    cx, cy = float(cols.mean()), float(rows.mean())
    bbox = (int(cols_i.min()), int(rows_i.min()), int(cols_i.max()) + 1, int(rows_i.max()) + 1)

    sigma = blur_sigma(config.contour_sigma_px, sp)
    polys = boundary_polygons(sel, sigma)
    perim_px = sum(polygon_length(p) for p in polys)
    scale = (sp[1], sp[0]) if sp is not None else (1.0, 1.0)  # (sx, sy) = (dx, dy)
    perim_phys = sum(polygon_length(p, scale) for p in polys)
    enclosed = abs(sum(polygon_signed_area(p, scale) for p in polys))
    circularity = 4.0 * math.pi * enclosed / perim_phys**2 if perim_phys > 0 else None

    major_px, minor_px, _ = _moments(rows, cols, 1.0, 1.0)
    major_mm = minor_mm = None
    if sp is not None:
        major_mm, minor_mm, orientation = _moments(rows, cols, sp[0], sp[1])
        ratio = major_mm / minor_mm if minor_mm > 0 else None
    else:
        _, _, orientation = _moments(rows, cols, 1.0, 1.0)
        ratio = major_px / minor_px if minor_px > 0 else None

    contour = _largest_outer_contour(sel, polys, config, sigma)
    return FrameMeasurement(
        present=True,
        area_px=area_px,
        area_mm2=area_mm2,
        n_components=n_comp,
        centroid_px=(cx, cy),
        centroid_mm=(cx * sp[1], cy * sp[0]) if sp is not None else None,
        bbox_px=bbox,
        perimeter_px=perim_px,
        perimeter_mm=perim_phys if sp is not None else None,
        circularity=circularity,
        flattening_ratio=ratio,
        major_axis_px=major_px,
        minor_axis_px=minor_px,
        major_axis_mm=major_mm,
        minor_axis_mm=minor_mm,
        orientation_deg=orientation,
        contour_px=contour,
        at_side=bbox[0] == 0 or bbox[2] == full.shape[1],
    )


def _largest_outer_contour(
    sel: npt.NDArray[np.bool_],
    polys: list[npt.NDArray[np.float64]],
    config: MeasureConfig,
    sigma: float | tuple[float, float],
) -> tuple[Point, ...] | None:
    """The simplified outer boundary enclosing the most area, as ``((x, y), ...)`` px."""
    if config.largest_component_only:
        candidates = polys
    else:
        candidates = boundary_polygons(largest_component(sel, config.connectivity), sigma)
    if not candidates:
        return None
    best = max(candidates, key=lambda p: abs(polygon_signed_area(p)))
    simple = simplify_polygon(best, config.simplify_tolerance_px)[:-1]
    return tuple((round(float(x), config.decimals), round(float(y), config.decimals)) for x, y in simple)


def measure_frames(
    masks: npt.ArrayLike | Iterable[npt.ArrayLike],
    spacing: Spacing = None,
    config: MeasureConfig = DEFAULT_MEASURE_CONFIG,
) -> list[FrameMeasurement]:
    """:func:`measure_frame` for every mask of ``[N, H, W]`` (or an iterable of ``[H, W]``)."""
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        raise ValueError("measure_frames expects [N, H, W]; use measure_frame for one mask")
    return [measure_frame(m, spacing, config) for m in masks]  # type: ignore[union-attr]
