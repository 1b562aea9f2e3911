"""The static tissue scene of one clip: echogenicity, anisotropy, attenuation and nerve mask.

Maps are ``float32 [Hc, Wc]`` on a :class:`~ultramn.data.synth.tissue.Canvas` in tissue
coordinates (mm). ``echo`` is the amplitude reflectivity (soft tissue ~1; it multiplies
the unit speckle field); ``aniso`` is the extra reflectivity of fibrillar structures that
is lost when the beam is not perpendicular to the local ``fibre_angle`` (radians);
``atten`` is the amplitude attenuation per mm that makes bone shadows and posterior
enhancement; ``nerve`` is 1 inside the epineurium's inner edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ultramn.data.synth import tissue as tx
from ultramn.data.synth.anatomy import FLEXOR_LAYOUT, AnatomyParams
from ultramn.data.synth.config import RenderConstants
from ultramn.data.synth.tissue import Canvas

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EchoLevels:
    """Linear echogenicity of the tissues (soft tissue ~1)."""

    gel: float = 0.005
    skin_entry: float = 3.0
    dermis: float = 0.8
    fat: float = 0.07
    fat_septa: float = 0.7
    connective: float = 0.16
    muscle: float = 0.06
    muscle_septa: float = 0.55
    fascia: float = 1.4
    tendon: float = 0.4
    tendon_aniso: float = 0.65
    retinaculum: float = 1.6
    retinaculum_aniso: float = 1.6
    epineurium: float = 1.6
    epineurium_aniso: float = 0.5
    perineurium: float = 0.38
    fascicle: float = 0.06
    bone_cortex: float = 5.0
    bone_inside: float = 0.3
    lumen: float = 0.004
    vessel_wall: float = 1.0


LEVELS = EchoLevels()


@dataclass
class TissueMaps:
    """The painted scene; see the module docstring. Nerve centre/size in canvas mm."""

    canvas: Canvas
    echo: F32
    aniso: F32
    fibre_angle: F32
    atten: F32
    nerve: F32
    transverse: bool
    nerve_x_mm: float = 0.0
    nerve_z_mm: float = 0.0
    nerve_half_width_mm: float = 3.0
    nerve_half_height_mm: float = 1.0
    tendon_top_mm: float = 0.0
    tendon_bottom_mm: float = 0.0
    artery: tuple[float, float, float] | None = None
    extra: dict[str, float] = field(default_factory=dict)


class _Painter:
    """Paints tissues in order (later paint wins) on an anatomy-frame canvas."""

    def __init__(self, canvas: Canvas, rc: RenderConstants) -> None:
        shape = canvas.shape
        self.c = canvas
        self.echo = np.full(shape, LEVELS.gel, np.float32)
        self.aniso = np.zeros(shape, np.float32)
        self.angle = np.zeros(shape, np.float32)
        self.atten = np.where(canvas.z > 0, rc.background_atten_per_mm, 0.0).astype(np.float32) * np.ones(shape, np.float32)
        self.nerve = np.zeros(shape, np.float32)
        self.rc = rc

    def paint(self, where: B, echo: F32 | float, aniso: F32 | float = 0.0, angle: F32 | float = 0.0) -> None:
        """Set echo/aniso/angle on ``where``."""
        where = np.broadcast_to(where, self.c.shape)
        self.echo[where] = (np.broadcast_to(echo, self.c.shape))[where]
        self.aniso[where] = (np.broadcast_to(aniso, self.c.shape))[where]
        self.angle[where] = (np.broadcast_to(angle, self.c.shape))[where]

    def bone(self, surface_mm: F32, cortex_mm: float = 0.45) -> None:
        """Bone below the per-column ``surface_mm`` ([1, Wc]): bright cortex, black shadow."""
        z = self.c.z
        below = z >= surface_mm
        cortex = below & (z < surface_mm + cortex_mm)
        self.paint(below, LEVELS.bone_inside)
        fade = np.exp(-(((z - surface_mm) / (0.5 * cortex_mm)) ** 2))
        # specular surface: steep flanks send the echo away from the probe
        finite = np.where(np.isfinite(surface_mm), surface_mm, 1e3)
        slope = np.arctan(np.gradient(finite.ravel(), self.c.spacing_mm))[None, :]
        facing = np.exp(-((slope / 0.6) ** 2))
        self.paint(cortex, (LEVELS.bone_cortex * fade * facing).astype(np.float32))
        self.atten[below] = self.rc.bone_atten_per_mm
        self.atten[cortex] = self.rc.bone_atten_per_mm * 0.25
        self.nerve[below] = 0.0

    def vessel(self, cx: float, cz: float, r: float) -> None:
        """An artery: anechoic lumen (with posterior enhancement) and a bright wall."""
        rad = tx.ellipse_radius(self.c, cx, cz, r, r)
        wall = (rad < 1 + 0.25 / r) & (rad >= 1)
        lumen = rad < 1
        self.paint(wall, LEVELS.vessel_wall)
        self.paint(lumen, LEVELS.lumen)
        self.atten[lumen] = self.rc.lumen_atten_per_mm

    def skin_and_fat(self, rng: np.random.Generator, skin: float, fat_bottom: F32 | float) -> None:
        """Skin line (bright entry echo + dermis) and subcutaneous fat down to ``fat_bottom``."""
        z = self.c.z
        fat = tx.fat(rng, self.c, LEVELS.fat, LEVELS.fat_septa)
        self.paint(np.broadcast_to((z >= 0), self.c.shape) & (z < fat_bottom), fat)
        dermis = LEVELS.dermis * (1 + 0.35 * tx.smooth_noise(rng, self.c, 0.15, 0.5))
        self.paint(np.broadcast_to((z >= 0) & (z < skin), self.c.shape), dermis.astype(np.float32))
        self.paint(np.broadcast_to((z >= 0) & (z < 0.25), self.c.shape), LEVELS.skin_entry)


def _place_fascicles(rng: np.random.Generator, n: int) -> list[tuple[float, float, float]]:
    """``n`` non-overlapping discs (u, v, r) inside the unit disc (normalised nerve frame)."""
    r0 = float(np.sqrt(0.42 / n))
    out: list[tuple[float, float, float]] = []
    for _ in range(400):
        if len(out) == n:
            break
        r = r0 * float(rng.uniform(0.7, 1.25))
        rho = float(np.sqrt(rng.uniform(0, 1))) * (0.93 - r)
        th = float(rng.uniform(0, 2 * np.pi))
        u, v = rho * np.cos(th), rho * np.sin(th)
        if all((u - a) ** 2 + (v - b) ** 2 > (r + c + 0.06) ** 2 for a, b, c in out):
            out.append((u, v, r))
    return out


def _transverse_nerve(
    p: _Painter,
    rng: np.random.Generator,
    cx: float,
    cz: float,
    a: float,
    b: float,
    ep: float,
    n_fasc: int,
    wobble: tuple[float, float],
    tilt_rad: float,
    in_mask: bool,
) -> None:
    """Honeycomb nerve: bright epineurium ring, bright perineurium, dark round fascicles."""
    phases = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))
    c = np.cos(tilt_rad)
    r_in = tx.lumpy_radius(p.c, cx, cz, a * c + b * (1 - c), b, wobble, phases)
    r_out = tx.lumpy_radius(p.c, cx, cz, a * c + b * (1 - c) + ep, b + ep, wobble, phases)
    inside = r_in < 1
    rim = (r_out < 1) & ~inside
    rim_tex = LEVELS.epineurium * (1 + 0.25 * tx.smooth_noise(rng, p.c, 0.1, 0.3))
    p.paint(rim, rim_tex.astype(np.float32), LEVELS.epineurium_aniso, 0.0)
    p.paint(inside, LEVELS.perineurium)
    for u, v, r in _place_fascicles(rng, n_fasc):
        fr = tx.ellipse_radius(p.c, cx + u * a, cz + v * b, r * a * rng.uniform(0.85, 1.15), r * b * rng.uniform(0.85, 1.15))
        p.paint((fr < 1) & inside, LEVELS.fascicle)
    if in_mask:
        p.nerve[inside] = 1.0


def _tendon_t(p: _Painter, tex: F32, cx: float, cz: float, a: float, b: float, angle: float) -> None:
    """A tendon cut across: punctate bright oval with a thin dark paratenon."""
    r = tx.ellipse_radius(p.c, cx, cz, a, b, angle)
    p.paint((r < 1.12) & (r >= 1), LEVELS.connective * 0.6)
    p.paint(r < 1, tex, LEVELS.tendon_aniso, 0.0)


def _render_tw(p: _Painter, an: AnatomyParams, rng: np.random.Generator, maps: dict[str, float]) -> None:
    c = p.c
    x, z = c.x, c.z
    a, b = AnatomyParams.semi_axes(an.wrist_csa_mm2, an.wrist_flattening)
    ep = an.epineurium_mm
    zc = an.wrist_depth_mm + b
    t_r = an.retinaculum_mm
    ret_bottom_mid = an.wrist_depth_mm - ep - 0.1
    half = 0.5 * (an.scaphoid_x_mm - an.pisiform_x_mm)
    x_mid = 0.5 * (an.scaphoid_x_mm + an.pisiform_x_mm)
    k = 2.8 / half**2
    ret_bottom = (ret_bottom_mid + k * (x - x_mid) ** 2).astype(np.float32)
    ret_top = ret_bottom - t_r * (1 + 0.4 * ((x - x_mid) / half) ** 2)
    fat_bottom = np.minimum(ret_top, max(an.wrist_depth_mm - ep - t_r - 0.1, an.skin_mm + 0.3) + 0.0 * x)
    skin = min(an.skin_mm, float(ret_top.min()) - 0.25)
    # deep default: tunnel contents (loose connective tissue); thenar / hypothenar muscle outside
    p.paint(np.broadcast_to(z >= 0, c.shape), (LEVELS.connective * (1 + 0.3 * tx.smooth_noise(rng, c, 0.2, 0.2))).astype(np.float32))
    muscle = tx.muscle_transverse(rng, c, LEVELS.muscle, LEVELS.muscle_septa, an.muscle_cell_mm)
    outside = (x > an.scaphoid_x_mm - 0.5) | (x < an.pisiform_x_mm + 0.5)
    p.paint(outside & (z > fat_bottom), muscle)
    p.skin_and_fat(rng, skin, fat_bottom)
    # nine flexor tendons (deep first), FCR outside the tunnel on the radial side
    tex = tx.punctate(rng, c, LEVELS.tendon * 0.9, LEVELS.tendon)
    order = sorted(range(len(FLEXOR_LAYOUT)), key=lambda i: -FLEXOR_LAYOUT[i][2])
    for i in order:
        _, lx, lz = FLEXOR_LAYOUT[i]
        _tendon_t(
            p, tex, lx + an.tendon_dx_mm[i], zc + lz + an.tendon_dz_mm[i], an.tendon_a_mm[i], an.tendon_b_mm[i], 0.15 * float(rng.normal())
        )
    _tendon_t(p, tex, an.scaphoid_x_mm + 2.2, zc + 0.8, 2.0, 1.6, 0.0)
    # flexor retinaculum: thin bright arc, darker where it slopes (anisotropy)
    slope = np.arctan(2 * k * (x - x_mid)).astype(np.float32)
    ret = (z >= ret_top) & (z < ret_bottom) & (x > an.pisiform_x_mm) & (x < an.scaphoid_x_mm)
    ret_tex = tx.fibrillar(rng, c, LEVELS.retinaculum * 0.7, LEVELS.retinaculum * 0.5, 0.22)
    p.paint(ret, ret_tex, LEVELS.retinaculum_aniso, np.broadcast_to(slope, c.shape))
    if an.palmaris_longus and float(fat_bottom.min()) - skin > 1.0:
        r = tx.ellipse_radius(c, -0.8, 0.5 * (skin + ret_bottom_mid - t_r), 2.2, 0.45)
        p.paint(r < 1, tex, LEVELS.tendon_aniso, 0.0)
    # carpal bones: the tunnel floor (arched), scaphoid tubercle and pisiform
    floor = zc + an.carpal_floor_mm - 3.0 * np.clip((x - x_mid) / half, -1, 1) ** 2 + 0.5 * np.sin(0.7 * x + float(rng.uniform(0, 6)))
    surface = floor
    for bx, bz, br in ((an.scaphoid_x_mm + 1.0, zc + 5.5, 3.2), (an.pisiform_x_mm - 0.5, zc + 6.5, 3.6)):
        top = np.where(np.abs(x - bx) < br, bz - np.sqrt(np.clip(br**2 - (x - bx) ** 2, 0, None)), np.inf)
        surface = np.minimum(surface, top)
    # ulnar artery and ulnar nerve (Guyon's canal), superficial on the ulnar side
    ra = an.artery_radius_mm
    az = max(an.artery_depth_mm, skin + 0.4) + ra
    p.vessel(an.artery_x_mm, az, ra)
    _transverse_nerve(p, rng, an.artery_x_mm - ra - 1.2, az - 0.2, 1.0, 0.7, 0.25, 3, (0.0, 0.0), 0.0, in_mask=False)
    p.bone(surface.astype(np.float32))
    # the median nerve, directly beneath the retinaculum
    _transverse_nerve(p, rng, 0.0, zc, a, b, ep, an.wrist_fascicles, an.nerve_wobble, np.deg2rad(an.nerve_tilt_deg), in_mask=True)
    maps.update(nerve_z=zc, a=a, b=b, tendon_top=zc + 1.5, tendon_bottom=zc + 10.0, artery_x=an.artery_x_mm, artery_z=az, artery_r=ra)


def _render_tf(p: _Painter, an: AnatomyParams, rng: np.random.Generator, maps: dict[str, float]) -> None:
    c = p.c
    x, z = c.x, c.z
    a, b = AnatomyParams.semi_axes(an.forearm_csa_mm2, an.forearm_flattening)
    ep = an.epineurium_mm
    zc = an.forearm_depth_mm + b
    fat_bottom = min(an.skin_mm + an.forearm_fat_mm, an.forearm_depth_mm - 3.0)
    fascia = (fat_bottom + 0.3 * np.sin(0.15 * x + float(rng.uniform(0, 6)))).astype(np.float32)
    # muscles: FDS above the nerve, FDP below; bright fascial planes between bellies
    im_plane = (zc + 0.15 * x * float(rng.normal(0, 0.5)) * 0.2 + 0.4 * np.sin(0.2 * x + float(rng.uniform(0, 6)))).astype(np.float32)
    fds = tx.muscle_transverse(rng, c, LEVELS.muscle, LEVELS.muscle_septa, an.muscle_cell_mm)
    fdp = tx.muscle_transverse(rng, c, LEVELS.muscle * 1.15, LEVELS.muscle_septa, an.muscle_cell_mm * 0.9)
    p.paint(np.broadcast_to(z >= 0, c.shape), fds)
    p.paint(np.broadcast_to(z > im_plane, c.shape), fdp)
    # oblique fascial planes between neighbouring muscle bellies (FCR/PL radially, FCU ulnarly)
    for x_side, z_lo, z_hi in (
        (float(rng.uniform(4.5, 8.0)), 0.0, zc),
        (-float(rng.uniform(4.5, 8.0)), 0.0, zc),
        (float(rng.uniform(-3, 3)), zc + 2.0, 99.0),
    ):
        xk = x_side + float(rng.uniform(-0.4, 0.4)) * (z - zc) + 0.4 * np.sin(0.5 * z + float(rng.uniform(0, 6)))
        line = (np.abs(x - xk) < 0.18) & (z > fascia) & (z > z_lo) & (z < z_hi)
        p.paint(line, LEVELS.fascia * 0.7)
    p.paint(np.abs(z - im_plane) < 0.18, LEVELS.fascia * 0.8)
    p.paint(np.abs(z - fascia - 0.15) < 0.2, LEVELS.fascia, LEVELS.tendon_aniso * 0.3, 0.0)
    p.skin_and_fat(rng, an.skin_mm, fascia)
    # radius and ulna (bright convex surfaces with shadow), interosseous membrane between
    zb = an.forearm_bone_depth_mm
    surface = np.full_like(x, np.inf)
    for bx, bz, ba, bb in ((an.radius_x_mm + 4.0, zb + 3.0, 7.0, 3.0), (an.ulna_x_mm - 3.5, zb + 4.0, 6.0, 2.5)):
        top = np.where(np.abs(x - bx) < ba, bz - bb * np.sqrt(np.clip(1 - ((x - bx) / ba) ** 2, 0, None)), np.inf)
        surface = np.minimum(surface, top)
    membrane = (np.abs(z - (zb + 3.0 + 0.05 * x)) < 0.15) & np.isinf(surface)
    p.paint(membrane, LEVELS.fascia)
    p.bone(surface.astype(np.float32))
    ra = 0.85 * an.artery_radius_mm
    ax, az = 0.75 * an.artery_x_mm, zc + 0.8
    p.vessel(ax, az, ra)
    _transverse_nerve(p, rng, ax - ra - 1.4, az, 1.0, 0.7, 0.25, 3, (0.0, 0.0), 0.0, in_mask=False)
    _transverse_nerve(p, rng, 0.0, zc, a, b, ep, an.forearm_fascicles, an.nerve_wobble, np.deg2rad(an.nerve_tilt_deg), in_mask=True)
    maps.update(nerve_z=zc, a=a, b=b, tendon_top=zc - 3.0, tendon_bottom=zc + 3.0, artery_x=ax, artery_z=az, artery_r=ra)


def _sigmoid(v: F32) -> F32:
    return (1.0 / (1.0 + np.exp(-v))).astype(np.float32)


def _longitudinal_nerve(p: _Painter, rng: np.random.Generator, top: F32, thick: F32, ep: float, n_lines: int) -> None:
    """Fibrillar nerve band: bright epineurium lines, dark parallel fascicle lines inside."""
    z = p.c.z
    inside = (z >= top) & (z < top + thick)
    rim = ((z >= top - ep) & (z < top)) | ((z >= top + thick) & (z < top + thick + ep))
    p.paint(rim, (LEVELS.epineurium * (1 + 0.25 * tx.smooth_noise(rng, p.c, 0.1, 0.8))).astype(np.float32), LEVELS.epineurium_aniso, 0.0)
    frac = (z - top) / np.maximum(thick, 1e-3) + 0.06 * tx.smooth_noise(rng, p.c, 2.0, 2.5)
    phase = np.cos(2 * np.pi * n_lines * frac)
    dark = np.clip(phase, 0, 1) ** 2 * np.clip(tx.smooth_noise(rng, p.c, 0.3, 2.5) + 1.3, 0, 1)
    level = LEVELS.perineurium + (LEVELS.fascicle - LEVELS.perineurium) * dark
    p.paint(inside, level.astype(np.float32), 0.0, 0.0)
    p.nerve[inside] = 1.0


def _render_lw(p: _Painter, an: AnatomyParams, rng: np.random.Generator, maps: dict[str, float]) -> None:
    c = p.c
    x, z = c.x, c.z
    _, b = AnatomyParams.semi_axes(an.wrist_csa_mm2, an.wrist_flattening)
    ep = an.epineurium_mm
    x_t = float(rng.uniform(-6.0, 6.0))  # carpal tunnel inlet along the nerve
    s = _sigmoid((x - x_t) / 1.5)
    thick = (2 * b * (1 - float(rng.uniform(0.1, 0.3)) * s)).astype(np.float32)
    top = (an.wrist_depth_mm + float(rng.uniform(0.2, 0.7)) * s + float(rng.normal(0, 0.02)) * x).astype(np.float32)
    t_r = an.retinaculum_mm
    ret_bottom = top - ep - 0.1
    ret_top = ret_bottom - (0.25 + (t_r - 0.25) * s)
    skin = min(an.skin_mm, float(ret_top.min()) - 0.3)
    p.paint(np.broadcast_to(z >= 0, c.shape), (LEVELS.connective * (1 + 0.3 * tx.smooth_noise(rng, c, 0.2, 0.6))).astype(np.float32))
    # flexor tendons below the nerve: FDS then FDP bands, fibrillar
    t1_top = top + thick + ep + 0.25
    t1_bot = t1_top + float(rng.uniform(2.5, 3.5)) + 0.3 * np.sin(0.25 * x + float(rng.uniform(0, 6)))
    t2_top = t1_bot + 0.3
    t2_bot = t2_top + float(rng.uniform(2.8, 4.0)) + 0.3 * np.sin(0.2 * x + float(rng.uniform(0, 6)))
    fib = tx.fibrillar(rng, c, LEVELS.tendon * 0.6, LEVELS.tendon * 1.2, 0.3)
    slope = np.broadcast_to(np.gradient(t1_bot.ravel(), c.spacing_mm)[None, :], c.shape).astype(np.float32)
    for tt, tb in ((t1_top, t1_bot), (t2_top, t2_bot)):
        p.paint((z >= tt) & (z < tb), fib, LEVELS.tendon_aniso, np.arctan(slope))
    # distal radius proximally, pronator quadratus above it; lunate and capitate distally
    zr0 = float(np.max(t2_bot)) + float(rng.uniform(1.5, 3.0))
    x_j = x_t - float(rng.uniform(2.0, 6.0))
    pq = tx.muscle_longitudinal(rng, c, LEVELS.muscle, LEVELS.muscle_septa, np.deg2rad(an.pennation_deg * 0.5), 0.9)
    p.paint((z >= t2_bot + 0.2) & (x < x_j), pq)
    surface = np.where(x < x_j - 0.5, zr0 - 0.04 * (x - x_j), np.inf)
    for bx, bz, br in ((x_j + 4.0, zr0 + 4.5, 4.0), (x_j + 12.0, zr0 + 6.0, 4.8)):
        tops = np.where(np.abs(x - bx) < br, bz - np.sqrt(np.clip(br**2 - (x - bx) ** 2, 0, None)), np.inf)
        surface = np.minimum(surface, tops)
    surface = np.where(np.isinf(surface), zr0 + 3.0, surface)
    p.bone(surface.astype(np.float32))
    # retinaculum over the tunnel part of the nerve; thin fascia proximally
    ret_tex = tx.fibrillar(rng, c, LEVELS.retinaculum * 0.8, LEVELS.retinaculum * 0.5, 0.25)
    p.paint((z >= ret_top) & (z < ret_bottom), ret_tex, LEVELS.retinaculum_aniso * s, 0.0)
    p.skin_and_fat(rng, skin, ret_top)
    n_lines = int(np.clip(round(2 * b / 0.5), 3, 6))
    _longitudinal_nerve(p, rng, top, thick, ep, n_lines)
    mid = c.shape[1] // 2
    maps.update(
        nerve_z=float(top[0, mid] + thick[0, mid] / 2),
        a=1e3,
        b=float(thick[0, mid] / 2),
        tendon_top=float(t1_top[0, mid]),
        tendon_bottom=float(t2_bot[0, mid]),
    )


def _render_lf(p: _Painter, an: AnatomyParams, rng: np.random.Generator, maps: dict[str, float]) -> None:
    c = p.c
    x, z = c.x, c.z
    _, b = AnatomyParams.semi_axes(an.forearm_csa_mm2, an.forearm_flattening)
    b *= 0.85  # the long-axis band looks thinner than the short-axis height
    ep = an.epineurium_mm
    top = (an.forearm_depth_mm + float(rng.normal(0, 0.03)) * x + 0.3 * np.sin(0.12 * x + float(rng.uniform(0, 6)))).astype(np.float32)
    thick = (2 * b * (1 + 0.08 * np.sin(0.2 * x + float(rng.uniform(0, 6))))).astype(np.float32)
    fat_bottom = min(an.skin_mm + an.forearm_fat_mm, an.forearm_depth_mm - 3.0)
    fascia = (fat_bottom + 0.2 * np.sin(0.1 * x + float(rng.uniform(0, 6)))).astype(np.float32)
    th = np.deg2rad(an.pennation_deg)
    fds = tx.muscle_longitudinal(rng, c, LEVELS.muscle, LEVELS.muscle_septa, th, float(rng.uniform(0.7, 1.1)))
    fdp = tx.muscle_longitudinal(rng, c, LEVELS.muscle * 1.1, LEVELS.muscle_septa, -th * 0.8, float(rng.uniform(0.7, 1.1)))
    p.paint(np.broadcast_to(z >= 0, c.shape), fds)
    p.paint(z > top + thick / 2, fdp)
    # an aponeurosis inside FDS (bright line the pennate fibres insert on)
    apo = fascia + 0.45 * (top - fascia) + 0.05 * x
    p.paint(np.abs(z - apo) < 0.2, LEVELS.fascia, LEVELS.tendon_aniso * 0.4, 0.05)
    p.paint(np.abs(z - fascia - 0.15) < 0.2, LEVELS.fascia, LEVELS.tendon_aniso * 0.3, 0.0)
    p.skin_and_fat(rng, an.skin_mm, fascia)
    zb = an.forearm_bone_depth_mm + float(rng.normal(0, 0.03)) * x
    if rng.random() < 0.6:
        p.bone(np.broadcast_to(zb + 0.3 * np.sin(0.15 * x), x.shape).astype(np.float32))
    else:
        p.paint(np.abs(z - zb) < 0.2, LEVELS.fascia)
    n_lines = int(np.clip(round(2 * b / 0.55), 2, 5))
    _longitudinal_nerve(p, rng, top, thick, ep, n_lines)
    mid = c.shape[1] // 2
    maps.update(
        nerve_z=float(top[0, mid] + thick[0, mid] / 2),
        a=1e3,
        b=float(thick[0, mid] / 2),
        tendon_top=float(top[0, mid] - 3.0),
        tendon_bottom=float(top[0, mid] + thick[0, mid] + 3.0),
    )


_RENDERERS = {"TW": _render_tw, "TF": _render_tf, "LW": _render_lw, "LF": _render_lf}


def render_scene(
    plane: str, anatomy: AnatomyParams, canvas: Canvas, nerve_x_mm: float, mirror: bool, rng: np.random.Generator, rc: RenderConstants
) -> TissueMaps:
    """Paint ``plane`` of ``anatomy`` on ``canvas`` with the nerve centred at ``nerve_x_mm``.

    ``mirror`` flips the anatomy left-right (a left arm).
    """
    w = canvas.shape[1]
    s = canvas.spacing_mm
    if mirror:
        x0 = -(canvas.x0_mm + w * s - nerve_x_mm)
    else:
        x0 = canvas.x0_mm - nerve_x_mm
    local = Canvas(canvas.shape, s, canvas.z0_mm, x0)
    p = _Painter(local, rc)
    info: dict[str, float] = {}
    _RENDERERS[plane](p, anatomy, rng, info)
    arrays = [p.echo, p.aniso, p.angle, p.atten, p.nerve]
    if mirror:
        arrays = [np.ascontiguousarray(a[:, ::-1]) for a in arrays]
        arrays[2] = -arrays[2]
    artery = None
    if "artery_x" in info:
        ax = info["artery_x"]
        artery = (nerve_x_mm + (-ax if mirror else ax), info["artery_z"], info["artery_r"])
    return TissueMaps(
        canvas=canvas,
        echo=arrays[0],
        aniso=arrays[1],
        fibre_angle=arrays[2],
        atten=arrays[3],
        nerve=arrays[4],
        transverse=plane.startswith("T"),
        nerve_x_mm=nerve_x_mm,
        nerve_z_mm=info["nerve_z"],
        nerve_half_width_mm=min(info["a"], 50.0),
        nerve_half_height_mm=info["b"],
        tendon_top_mm=info["tendon_top"],
        tendon_bottom_mm=info["tendon_bottom"],
        artery=artery,
    )
