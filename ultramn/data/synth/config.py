"""Configuration of the synthetic generator: ranges to sample from and the sampled params.

All lengths are in millimetres (``_mm``), angles in degrees (``_deg``) or radians
(``_rad``), levels in decibels (``_db``). Ranges are ``(low, high)`` for uniform sampling.
The literature figures behind the anatomy ranges are in ``DOMAIN.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ultramn.errors import UserInputError

Range = tuple[float, float]
IntRange = tuple[int, int]


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

    MIN_SIZE = 48
    MAX_SIZE = 1024
    MAX_FRAMES = 1000

    def __post_init__(self) -> None:
        if self.participants < 1:
            raise UserInputError(f"--participants must be at least 1, got {self.participants}")
        if self.seed < 0:
            raise UserInputError(f"--seed must be a non-negative integer, got {self.seed}")
        for name, v in (("height", self.height), ("width", self.width)):
            if not self.MIN_SIZE <= v <= self.MAX_SIZE:
                raise UserInputError(f"--size {name} must be in [{self.MIN_SIZE}, {self.MAX_SIZE}] pixels, got {v}")
        if self.frames is not None and not 1 <= self.frames <= self.MAX_FRAMES:
            raise UserInputError(f"--frames must be in [1, {self.MAX_FRAMES}], got {self.frames}")
