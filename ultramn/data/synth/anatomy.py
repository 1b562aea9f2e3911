"""Per-participant anatomy: sampled once per participant, varied slightly per side.

Lateral positions are in millimetres relative to the median nerve's centre, positive
toward the radial (thumb) side of a right arm; the scene mirrors them for a left arm.
Depths are millimetres below the skin surface.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ultramn.data.synth.config import AnatomyRanges

#: Nine flexor tendons at the carpal tunnel inlet: (name, x, z below nerve centre) in mm.
FLEXOR_LAYOUT: tuple[tuple[str, float, float], ...] = (
    ("FDS3", -1.5, 3.2),
    ("FDS4", -5.6, 2.8),
    ("FDS2", 2.2, 5.4),
    ("FDS5", -8.6, 5.6),
    ("FDP2", 3.4, 8.6),
    ("FDP3", -0.6, 8.9),
    ("FDP4", -4.6, 8.7),
    ("FDP5", -8.2, 8.3),
    ("FPL", 7.0, 5.2),
)


@dataclass(frozen=True)
class AnatomyParams:
    """One arm's anatomy (mm, mm², degrees); see the module docstring for the axes."""

    wrist_csa_mm2: float
    forearm_csa_mm2: float
    wrist_flattening: float
    forearm_flattening: float
    wrist_depth_mm: float
    """Depth of the nerve's top edge at the wrist."""
    forearm_depth_mm: float
    wrist_fascicles: int
    forearm_fascicles: int
    epineurium_mm: float
    skin_mm: float
    wrist_fat_mm: float
    forearm_fat_mm: float
    retinaculum_mm: float
    tendon_a_mm: tuple[float, ...]
    tendon_b_mm: tuple[float, ...]
    tendon_dx_mm: tuple[float, ...]
    tendon_dz_mm: tuple[float, ...]
    carpal_floor_mm: float
    """Depth of the carpal-tunnel floor below the nerve centre."""
    scaphoid_x_mm: float
    pisiform_x_mm: float
    artery_x_mm: float
    artery_depth_mm: float
    artery_radius_mm: float
    radius_x_mm: float
    ulna_x_mm: float
    forearm_bone_depth_mm: float
    pennation_deg: float
    muscle_cell_mm: float
    palmaris_longus: bool
    nerve_wobble: tuple[float, float]
    nerve_tilt_deg: float
    texture_seed: int

    @staticmethod
    def semi_axes(csa_mm2: float, flattening: float) -> tuple[float, float]:
        """Ellipse semi-axes ``(a, b)`` in mm with area ``csa`` and ``a/b = flattening``."""
        b = float(np.sqrt(csa_mm2 / (np.pi * flattening)))
        return flattening * b, b


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def sample_anatomy(rng: np.random.Generator, ranges: AnatomyRanges) -> AnatomyParams:
    """A participant's (right-arm) anatomy drawn from ``ranges``."""
    n = len(FLEXOR_LAYOUT)
    return AnatomyParams(
        wrist_csa_mm2=_u(rng, ranges.wrist_csa_mm2),
        forearm_csa_mm2=_u(rng, ranges.forearm_csa_mm2),
        wrist_flattening=_u(rng, ranges.wrist_flattening),
        forearm_flattening=_u(rng, ranges.forearm_flattening),
        wrist_depth_mm=_u(rng, ranges.wrist_depth_mm),
        forearm_depth_mm=_u(rng, ranges.forearm_depth_mm),
        wrist_fascicles=int(rng.integers(ranges.wrist_fascicles[0], ranges.wrist_fascicles[1] + 1)),
        forearm_fascicles=int(rng.integers(ranges.forearm_fascicles[0], ranges.forearm_fascicles[1] + 1)),
        epineurium_mm=_u(rng, ranges.epineurium_mm),
        skin_mm=_u(rng, ranges.skin_mm),
        wrist_fat_mm=_u(rng, ranges.wrist_fat_mm),
        forearm_fat_mm=_u(rng, ranges.forearm_fat_mm),
        retinaculum_mm=_u(rng, ranges.retinaculum_mm),
        tendon_a_mm=tuple(float(v) for v in rng.uniform(*ranges.tendon_semi_major_mm, size=n)),
        tendon_b_mm=tuple(float(v) for v in rng.uniform(*ranges.tendon_semi_minor_mm, size=n)),
        tendon_dx_mm=tuple(float(v) for v in rng.normal(0, 0.5, size=n)),
        tendon_dz_mm=tuple(float(v) for v in rng.normal(0, 0.35, size=n)),
        carpal_floor_mm=_u(rng, ranges.carpal_floor_below_nerve_mm),
        scaphoid_x_mm=float(rng.uniform(9.0, 12.0)),
        pisiform_x_mm=-float(rng.uniform(10.0, 13.0)),
        artery_x_mm=-float(rng.uniform(8.0, 11.0)),
        artery_depth_mm=float(rng.uniform(3.0, 5.0)),
        artery_radius_mm=_u(rng, ranges.artery_radius_mm),
        radius_x_mm=float(rng.uniform(7.0, 12.0)),
        ulna_x_mm=-float(rng.uniform(7.0, 12.0)),
        forearm_bone_depth_mm=_u(rng, ranges.forearm_bone_depth_mm),
        pennation_deg=_u(rng, ranges.pennation_deg),
        muscle_cell_mm=float(rng.uniform(0.7, 1.2)),
        palmaris_longus=bool(rng.random() < 0.8),
        nerve_wobble=(float(rng.uniform(0.0, 0.06)), float(rng.uniform(0.0, 0.05))),
        nerve_tilt_deg=float(rng.normal(0.0, 6.0)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


#: Fields that vary multiplicatively (sizes) and additively (positions, mm) between sides.
_SIZE_FIELDS = ("wrist_csa_mm2", "forearm_csa_mm2", "wrist_flattening", "forearm_flattening", "artery_radius_mm")
_POS_FIELDS = ("wrist_depth_mm", "forearm_depth_mm", "scaphoid_x_mm", "pisiform_x_mm", "artery_x_mm", "carpal_floor_mm")


def vary_side(base: AnatomyParams, rng: np.random.Generator, ranges: AnatomyRanges) -> AnatomyParams:
    """The other arm of the same participant: the same anatomy with small variations."""
    changes: dict[str, Any] = {}
    for name in _SIZE_FIELDS:
        changes[name] = float(getattr(base, name)) * float(1 + rng.normal(0, ranges.side_jitter))
    for name in _POS_FIELDS:
        changes[name] = float(getattr(base, name)) + float(rng.normal(0, ranges.side_jitter_mm))
    # keep depths and shape within the physiological ranges
    for name in ("wrist_depth_mm", "forearm_depth_mm", "wrist_flattening", "forearm_flattening"):
        lo, hi = getattr(ranges, name)
        changes[name] = min(max(changes[name], lo), hi)
    n = len(base.tendon_dx_mm)
    changes["tendon_dx_mm"] = tuple(float(v) for v in np.asarray(base.tendon_dx_mm) + rng.normal(0, 0.25, size=n))
    changes["tendon_dz_mm"] = tuple(float(v) for v in np.asarray(base.tendon_dz_mm) + rng.normal(0, 0.2, size=n))
    changes["nerve_tilt_deg"] = base.nerve_tilt_deg + float(rng.normal(0, 3.0))
    changes["texture_seed"] = int(rng.integers(0, 2**31 - 1))
    unknown = set(changes) - {f.name for f in fields(AnatomyParams)}
    if unknown:
        raise AssertionError(f"unknown anatomy fields {unknown}")
    return replace(base, **changes)
