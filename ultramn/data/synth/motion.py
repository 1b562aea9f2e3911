"""Motion through a clip: per-frame deformation of tissue coordinates.

For every frame, :meth:`ClipMotion.coords` maps each output pixel (image coordinates: depth
below the probe face and lateral position, mm) to the tissue point it shows (canvas
coordinates). Echogenicity, scatterers and the nerve mask are all sampled through the same
map, so speckle moves with the tissue and the mask follows the nerve.

Components: probe slide (lateral translation) and in-plane tilt (rotation about the
contact point), probe compression (superficial tissue squeezed), finger flexion (the nerve
moves 1-3 mm at the wrist, tendons glide), arterial pulsation; and, separately, the
scatterer-field rotation that slightly decorrelates speckle frame to frame. A clip may also
have a :class:`Sweep`: the probe slides off the nerve (or onto it), so some of its frames show
no median nerve (``ultramn synth --sweep-off``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ultramn.data.synth.config import MotionRanges
from ultramn.data.synth.scene import TissueMaps

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SmoothCurve:
    """A smooth random curve in [-1, 1]: a sum of two sinusoids (Hz, radians)."""

    freqs_hz: tuple[float, float]
    phases: tuple[float, float]

    def __call__(self, t_s: float) -> float:
        """Value at time ``t_s`` seconds."""
        v = sum(np.sin(2 * np.pi * f * t_s + p) for f, p in zip(self.freqs_hz, self.phases, strict=True))
        return float(v) / 2.0


#: How far past the image edge the nerve's centre goes at the end of a sweep (mm): beyond the
#: largest half-width (about 3.5 mm with the epineurium) plus the flexion excursion (3 mm).
SWEEP_CLEARANCE_MM = 8.0


@dataclass(frozen=True)
class Sweep:
    """A probe slide across the nerve during a clip (transverse planes).

    The view moves ``distance_mm`` laterally (signed, mm) between ``start_s`` and ``end_s``
    (smoothstep): off the nerve, or with ``onto`` the same path backwards in time, so the clip
    starts away from the nerve and slides onto it.
    """

    distance_mm: float
    start_s: float
    end_s: float
    onto: bool = False

    def offset_mm(self, t_s: float) -> float:
        """Lateral offset of the view at ``t_s`` seconds (mm)."""
        u = min(1.0, max(0.0, (t_s - self.start_s) / (self.end_s - self.start_s)))
        u = u * u * (3 - 2 * u)
        return self.distance_mm * ((1.0 - u) if self.onto else u)


def sample_sweep(rng: np.random.Generator, n_frames: int, fps: float, width_mm: float, nerve_x_mm: float, params: MotionParams) -> Sweep:
    """A sweep that takes the nerve (at ``nerve_x_mm`` from the image centre) wholly out of an image
    ``width_mm`` wide: in view for the first 10-25 % of the clip, sliding for the next 40-55 %,
    out of view for the rest (at least 20 %); left or right, off or onto, at random."""
    duration = n_frames / fps
    distance = width_mm / 2 + abs(nerve_x_mm) + SWEEP_CLEARANCE_MM + params.slide_mm + params.excursion_mm
    start = float(rng.uniform(0.10, 0.25)) * duration
    end = start + float(rng.uniform(0.40, 0.55)) * duration
    direction = 1.0 if rng.random() < 0.5 else -1.0
    return Sweep(direction * distance, start, end, onto=bool(rng.random() < 0.5))


@dataclass(frozen=True)
class MotionParams:
    """Amplitudes of a clip's motion (mm, radians, fractions, Hz)."""

    slide_mm: float
    tilt_rad: float
    elevation_tilt_rad: float
    compression: float
    compression_length_mm: float
    excursion_mm: float
    excursion_dir: tuple[float, float]
    tendon_glide_mm: float
    flex_hz: float
    flex_phase: float
    heart_hz: float
    pulse_frac: float
    decorrelation_rad: float
    slide_curve: SmoothCurve
    tilt_curve: SmoothCurve
    elev_curve: SmoothCurve
    press_curve: SmoothCurve
    sweep: Sweep | None = None


def _curve(rng: np.random.Generator, ranges: MotionRanges) -> SmoothCurve:
    f = rng.uniform(*ranges.smooth_hz, size=2)
    p = rng.uniform(0, 2 * np.pi, size=2)
    return SmoothCurve((float(f[0]), float(f[1])), (float(p[0]), float(p[1])))


def sample_motion(rng: np.random.Generator, ranges: MotionRanges, plane: str) -> MotionParams:
    """A clip's motion; the nerve's excursion range depends on the site (wrist/forearm)."""
    wrist = plane.endswith("W")
    exc = ranges.wrist_excursion_mm if wrist else ranges.forearm_excursion_mm
    ang = float(rng.uniform(0, 2 * np.pi))
    return MotionParams(
        slide_mm=float(rng.uniform(*ranges.slide_mm)),
        tilt_rad=float(np.deg2rad(rng.uniform(*ranges.tilt_deg))),
        elevation_tilt_rad=float(np.deg2rad(rng.uniform(*ranges.elevation_tilt_deg))),
        compression=float(rng.uniform(*ranges.compression)),
        compression_length_mm=float(rng.uniform(*ranges.compression_length_mm)),
        excursion_mm=float(rng.uniform(*exc)),
        excursion_dir=(float(np.cos(ang)), float(0.5 * np.sin(ang))),
        tendon_glide_mm=float(rng.uniform(*ranges.tendon_glide_mm)),
        flex_hz=float(rng.uniform(*ranges.flex_hz)),
        flex_phase=float(rng.uniform(0, 2 * np.pi)),
        heart_hz=float(rng.uniform(*ranges.heart_hz)),
        pulse_frac=float(rng.uniform(*ranges.pulse_frac)),
        decorrelation_rad=float(rng.uniform(*ranges.speckle_decorrelation_rad)),
        slide_curve=_curve(rng, ranges),
        tilt_curve=_curve(rng, ranges),
        elev_curve=_curve(rng, ranges),
        press_curve=_curve(rng, ranges),
    )


@dataclass(frozen=True)
class FrameState:
    """Motion state of one frame (mm, radians, fractions)."""

    slide_mm: float
    tilt_rad: float
    elevation_tilt_rad: float
    compression: float
    flex: float
    pulse: float


def frame_state(p: MotionParams, fps: float, frame: int) -> FrameState:
    """The motion state of a clip with motion ``p`` at ``frame`` (``fps`` frames per second)."""
    t = frame / fps
    flex = 0.5 * (1 - np.cos(2 * np.pi * p.flex_hz * t + p.flex_phase))
    pulse = max(0.0, float(np.sin(2 * np.pi * p.heart_hz * t))) ** 2
    return FrameState(
        slide_mm=p.slide_mm * p.slide_curve(t) + (p.sweep.offset_mm(t) if p.sweep else 0.0),
        tilt_rad=p.tilt_rad * p.tilt_curve(t),
        elevation_tilt_rad=p.elevation_tilt_rad * p.elev_curve(t),
        compression=p.compression * 0.5 * (1 + p.press_curve(t)),
        flex=float(flex),
        pulse=pulse,
    )


class ClipMotion:
    """Per-frame pixel -> canvas maps for one clip (output ``[H, W]``, square pixels)."""

    def __init__(self, params: MotionParams, maps: TissueMaps, shape: tuple[int, int], spacing_mm: float, fps: float) -> None:
        self.p = params
        self.maps = maps
        self.fps = fps
        h, w = shape
        self.z_img = ((np.arange(h, dtype=np.float32) + 0.5) * spacing_mm)[:, None]
        self.x_img = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) * spacing_mm)[None, :]

    def state(self, frame: int) -> FrameState:
        """The motion state at ``frame``."""
        return frame_state(self.p, self.fps, frame)

    def coords(self, st: FrameState) -> tuple[F32, F32]:
        """Canvas ``(rows, cols)`` (float32 ``[H, W]``, pixel units) shown by each output pixel."""
        m, p = self.maps, self.p
        c, s = np.float32(np.cos(st.tilt_rad)), np.float32(np.sin(st.tilt_rad))
        x = self.x_img * c + self.z_img * s + np.float32(st.slide_mm)
        z = -self.x_img * s + self.z_img * c
        # compression: superficial tissue squeezed, deep tissue shifted up by c*L
        L = np.float32(p.compression_length_mm)
        z = z + np.float32(st.compression) * L * (1 - np.exp(-np.maximum(z, 0) / L))
        # finger flexion: the nerve (and the tendons around it) move
        dx, dz = p.excursion_dir
        e = np.float32(st.flex * p.excursion_mm)
        if m.transverse:
            sx = np.float32(m.nerve_half_width_mm + 2.0)
            sz = np.float32(m.nerve_half_height_mm + 2.0)
            bump = np.exp(-(((x - m.nerve_x_mm) / sx) ** 2) - ((z - m.nerve_z_mm) / sz) ** 2)
            x = x - e * np.float32(dx) * bump
            z = z - e * np.float32(dz) * bump
        else:
            sz = np.float32(m.nerve_half_height_mm + 1.0)
            wn = np.exp(-(((z - m.nerve_z_mm) / sz) ** 2))
            band = np.float32(0.5 * (m.tendon_bottom_mm - m.tendon_top_mm))
            wt = np.exp(-(((z - 0.5 * (m.tendon_top_mm + m.tendon_bottom_mm)) / band) ** 4))
            g = np.float32(st.flex * p.tendon_glide_mm)
            x = x - e * wn - g * wt
            z = z - e * np.float32(dz) * wn
        if m.artery is not None and st.pulse > 0:
            ax, az, ar = m.artery
            rx, rz = x - ax, z - az
            w_art = np.exp(-(rx**2 + rz**2) / np.float32((2.5 * ar) ** 2))
            k = np.float32(1 - p.pulse_frac * st.pulse) ** w_art
            x = ax + rx * k
            z = az + rz * k
        cv = m.canvas
        rows = (z - cv.z0_mm) / np.float32(cv.spacing_mm) - np.float32(0.5)
        cols = (x - cv.x0_mm) / np.float32(cv.spacing_mm) - np.float32(0.5)
        return rows.astype(np.float32), cols.astype(np.float32)


def motion_margins_mm(p: MotionParams, width_mm: float, depth_mm: float) -> tuple[float, float]:
    """How far (lateral, axial; mm) the tissue shown during a clip can reach beyond the image."""
    lat = p.slide_mm + depth_mm * np.sin(p.tilt_rad) + max(p.excursion_mm, p.tendon_glide_mm) + 1.0
    ax = 0.5 * width_mm * np.sin(p.tilt_rad) + p.compression * p.compression_length_mm + p.excursion_mm + 1.0
    return float(lat), float(ax)
