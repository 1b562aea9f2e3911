"""Configuration of the synthetic generator: ranges to sample from and the sampled params.

All lengths are in millimetres (``_mm``), angles in degrees (``_deg``) or radians
(``_rad``), levels in decibels (``_db``). Ranges are ``(low, high)`` for uniform sampling.
The literature figures behind the anatomy ranges are in ``DOMAIN.md``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, is_dataclass

from ultramn.errors import UserInputError

Range = tuple[float, float]
IntRange = tuple[int, int]

#: The most worker processes ``ultramn synth --workers`` takes (a run never uses more than it has clips).
MAX_WORKERS = 256


@dataclass(frozen=True)
class AnatomyRanges:
    """Per-participant anatomy ranges (DOMAIN.md figures)."""

    wrist_csa_mm2: Range = (6.0, 10.0)
    forearm_csa_mm2: Range = (5.0, 8.0)
    wrist_flattening: Range = (2.0, 3.5)
    forearm_flattening: Range = (1.3, 2.0)
    wrist_depth_mm: Range = (2.0, 5.0)
    forearm_depth_mm: Range = (8.0, 15.0)
    wrist_fascicles: IntRange = (7, 14)
    forearm_fascicles: IntRange = (5, 10)
    epineurium_mm: Range = (0.3, 0.5)
    skin_mm: Range = (0.8, 1.4)
    wrist_fat_mm: Range = (0.4, 1.5)
    forearm_fat_mm: Range = (1.5, 4.0)
    retinaculum_mm: Range = (0.5, 0.9)
    tendon_semi_major_mm: Range = (2.0, 2.8)
    tendon_semi_minor_mm: Range = (1.2, 1.8)
    carpal_floor_below_nerve_mm: Range = (8.0, 11.0)
    artery_radius_mm: Range = (0.9, 1.3)
    forearm_bone_depth_mm: Range = (18.0, 27.0)
    pennation_deg: Range = (10.0, 25.0)
    side_jitter: float = 0.06
    """Relative left/right variation of sizes (a left view is a near-mirror of the right)."""
    side_jitter_mm: float = 0.4
    """Left/right variation of positions."""


@dataclass(frozen=True)
class AcquisitionRanges:
    """Per-clip scanner settings."""

    depth_setting_mm: Range = (20.0, 40.0)
    dynamic_range_db: Range = (50.0, 70.0)
    gain_db: Range = (-2.0, 2.0)
    tgc_compensation: Range = (0.85, 1.1)
    """Fraction of the tissue attenuation the time-gain compensation makes up."""
    fps: Range = (20.0, 30.0)
    frames: IntRange = (24, 48)
    probe_offset_frac: Range = (-0.18, 0.18)
    """Nerve's lateral position as a fraction of the image width from the centre."""
    grey_gamma: Range = (1.1, 1.5)
    speckle_reduction_px: Range = (0.5, 0.9)


@dataclass(frozen=True)
class QualityRanges:
    """Per-grade artefact strengths; index 0/1/2 = good/fair/poor."""

    probabilities: tuple[float, float, float] = (0.5, 0.3, 0.2)
    noise_db: tuple[Range, Range, Range] = ((-78.0, -72.0), (-70.0, -64.0), (-62.0, -56.0))
    """Electronic noise level relative to the white level."""
    gain_error_db: tuple[Range, Range, Range] = ((0.0, 1.5), (3.0, 6.0), (6.0, 11.0))
    contact_probability: tuple[float, float, float] = (0.0, 0.35, 0.85)
    contact_width_frac: Range = (0.1, 0.3)
    contact_residual: tuple[Range, Range, Range] = ((1.0, 1.0), (0.15, 0.5), (0.01, 0.12))
    reverb_probability: tuple[float, float, float] = (0.15, 0.6, 0.9)
    reverb_strength: tuple[Range, Range, Range] = ((0.1, 0.25), (0.25, 0.6), (0.5, 1.0))


@dataclass(frozen=True)
class MotionRanges:
    """Motion through a clip."""

    slide_mm: Range = (0.0, 2.5)
    tilt_deg: Range = (0.0, 4.0)
    elevation_tilt_deg: Range = (0.0, 8.0)
    compression: Range = (0.0, 0.22)
    compression_length_mm: Range = (4.0, 8.0)
    wrist_excursion_mm: Range = (1.0, 3.0)
    forearm_excursion_mm: Range = (0.5, 1.5)
    tendon_glide_mm: Range = (2.0, 6.0)
    flex_hz: Range = (0.4, 1.0)
    heart_hz: Range = (1.0, 1.5)
    pulse_frac: Range = (0.04, 0.1)
    speckle_decorrelation_rad: Range = (0.05, 0.12)
    """Per-frame rotation between the two scatterer fields (adjacent-frame correlation cos of it)."""
    smooth_hz: Range = (0.1, 0.6)


@dataclass(frozen=True)
class RenderConstants:
    """Tissue echogenicity (linear amplitude, soft tissue ~1) and attenuation values."""

    background_atten_per_mm: float = 0.05
    bone_atten_per_mm: float = 4.0
    lumen_atten_per_mm: float = -0.3
    white_level: float = 10.0
    """Echo amplitude (after speckle) that maps to 0 dB, i.e. white, at zero gain."""
    scatterer_presmooth_px: float = 1.2
    depth_bands: int = 3
    anisotropy_width_rad: float = 0.12


@dataclass(frozen=True)
class SynthConfig:
    """What ``ultramn synth`` generates; validated on construction (:class:`UserInputError`)."""

    participants: int = 1
    seed: int = 0
    height: int = 256
    width: int = 256
    frames: int | None = None
    """Frames per clip; ``None`` samples from :attr:`AcquisitionRanges.frames` per clip."""
    anatomy: AnatomyRanges = field(default_factory=AnatomyRanges)
    acquisition: AcquisitionRanges = field(default_factory=AcquisitionRanges)
    quality: QualityRanges = field(default_factory=QualityRanges)
    motion: MotionRanges = field(default_factory=MotionRanges)
    render: RenderConstants = field(default_factory=RenderConstants)
    sweep_off: float = 0.0
    """Share of transverse clips (TW, TF) in which the probe slides off the nerve or onto it, so
    part of the clip shows no median nerve (:class:`~ultramn.data.synth.motion.Sweep`); 0 keeps
    the nerve in every frame (and the output byte-identical to sets made before the option)."""

    MIN_SIZE = 48
    MAX_SIZE = 1024
    MAX_FRAMES = 1000
    MAX_PARTICIPANTS = 100_000
    MAX_SEED = 2**63 - 1
    #: Widest (or tallest) frame: depth comes from H and width from W at square pixels, so a
    #: longer side ratio is a field of view no linear probe has (48 x 1024 overflowed the scene).
    MAX_ASPECT = 4.0

    def __post_init__(self) -> None:
        _check_int("--participants", self.participants, 1, self.MAX_PARTICIPANTS)
        _check_int("--seed", self.seed, 0, self.MAX_SEED)
        for name, v in (("height", self.height), ("width", self.width)):
            _check_int(f"--size {name}", v, self.MIN_SIZE, self.MAX_SIZE, " pixels")
        if max(self.height, self.width) > self.MAX_ASPECT * min(self.height, self.width):
            raise UserInputError(
                f"--size {self.height} {self.width}: one side at most {self.MAX_ASPECT:g} times the other "
                "(the field of view of a linear probe)"
            )
        if self.frames is not None:
            _check_int("--frames", self.frames, 1, self.MAX_FRAMES)
        for group in ("anatomy", "acquisition", "quality", "motion", "render"):
            _check_ranges(group, getattr(self, group))
        lo, hi = self.acquisition.frames
        _check_int("acquisition.frames", lo, 1, self.MAX_FRAMES)
        _check_int("acquisition.frames", hi, 1, self.MAX_FRAMES)
        for name in ("depth_setting_mm", "fps"):
            if getattr(self.acquisition, name)[0] <= 0:
                raise UserInputError(f"acquisition.{name} must be positive, got {getattr(self.acquisition, name)}")
        if isinstance(self.sweep_off, bool) or not isinstance(self.sweep_off, numbers.Real) or not 0.0 <= self.sweep_off <= 1.0:
            raise UserInputError(f"--sweep-off must be a share in [0, 1], got {self.sweep_off!r}")
        probs = self.quality.probabilities
        if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
            raise UserInputError(f"quality.probabilities must be 3 non-negative numbers summing to 1, got {probs}")


def _check_int(option: str, value: object, lo: int, hi: int, unit: str = "") -> None:
    """:class:`UserInputError` unless ``value`` is an integer (not a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserInputError(f"{option} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise UserInputError(f"{option} must be in [{lo}, {hi}]{unit}, got {value}")


def _check_ranges(name: str, value: object) -> None:
    """Every number of a ranges group (nested tuples too) finite; every ``(low, high)`` pair ordered."""
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            _check_ranges(f"{name}.{f.name}", getattr(value, f.name))
    elif isinstance(value, tuple):
        for v in value:
            _check_ranges(name, v)
        if len(value) == 2 and all(isinstance(v, numbers.Real) for v in value) and value[0] > value[1]:
            raise UserInputError(f"{name}: the range's low end is above its high end: {value}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserInputError(f"{name} must be a number, got {value!r}")
    elif not math.isfinite(value):
        raise UserInputError(f"{name} must be a finite number, got {value!r}")
