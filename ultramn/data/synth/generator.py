"""Clip and dataset generation: anatomy -> scene -> motion -> B-mode frames and masks.

Determinism: every clip's random stream comes from ``numpy.random.SeedSequence(seed,
spawn_key=...)`` keyed by (participant index, plane, side); the participant's anatomy
from (participant index,) and each arm's variation from (participant index, side). Clips
are therefore independent tasks, and the output is byte-identical for any worker count.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ultramn.contract import PLANES, SIDES, SPLITS
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import MANIFEST_NAME, ClipRecord, ManifestError, read_manifest, write_manifest
from ultramn.data.synth.anatomy import AnatomyParams, sample_anatomy, vary_side
from ultramn.data.synth.bmode import AcquisitionParams, BModeFormer, bilinear_gather, scatterer_fields
from ultramn.data.synth.config import MAX_WORKERS, SynthConfig
from ultramn.data.synth.memory import WorkerPlan, available_bytes, plan_workers
from ultramn.data.synth.motion import ClipMotion, MotionParams, Sweep, motion_margins_mm, sample_motion, sample_sweep
from ultramn.data.synth.psf import PSF_VARIANTS, PsfBank, load_profiles, warm_cache
from ultramn.data.synth.quality import reverberation, sample_quality
from ultramn.data.synth.scene import LEVELS, render_scene
from ultramn.data.synth.tissue import Canvas
from ultramn.errors import UserInputError

U8 = npt.NDArray[np.uint8]
SOURCE = "synthetic"
SPLIT_RATIOS = (0.7, 0.15, 0.15)
_SIDE_KEY = 1
_CLIP_KEY = 2
_SWEEP_KEY = 3


@dataclass(frozen=True)
class ClipSpec:
    """One clip to generate: who, which plane/side, and optional overrides."""

    config: SynthConfig
    participant: int
    plane: str
    side: str
    grade: str | None = None
    """Force a quality grade (the preview does); ``None`` samples one."""

    @property
    def participant_id(self) -> str:
        """E.g. ``syn0-p0003``: unique across seeds."""
        return f"syn{self.config.seed}-p{self.participant:04d}"

    @property
    def clip_id(self) -> str:
        """E.g. ``syn0-p0003_TW_L``."""
        return f"{self.participant_id}_{self.plane}_{self.side}"


@dataclass(frozen=True)
class GeneratedClip:
    """A generated clip: frames and masks ``uint8 [T, H, W]`` and the settings used."""

    arrays: ClipArrays
    acquisition: AcquisitionParams


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def side_anatomy(config: SynthConfig, participant: int, side: str) -> AnatomyParams:
    """The anatomy of one arm of one participant (the right arm is the base sample)."""
    base = sample_anatomy(np.random.default_rng(_seq(config.seed, participant)), config.anatomy)
    if side == "R":
        return base
    return vary_side(base, np.random.default_rng(_seq(config.seed, participant, _SIDE_KEY, SIDES.index(side))), config.anatomy)


def sample_acquisition(rng: np.random.Generator, config: SynthConfig, grade: str | None) -> AcquisitionParams:
    """Per-clip scanner settings and image quality."""
    ar = config.acquisition
    depth = float(rng.uniform(*ar.depth_setting_mm))
    n_frames = config.frames if config.frames is not None else int(rng.integers(ar.frames[0], ar.frames[1] + 1))
    spacing = depth / config.height
    return AcquisitionParams(
        depth_mm=depth,
        pixel_spacing_mm=spacing,
        gain_db=float(rng.uniform(*ar.gain_db)),
        dynamic_range_db=float(rng.uniform(*ar.dynamic_range_db)),
        tgc_compensation=float(rng.uniform(*ar.tgc_compensation)),
        grey_gamma=float(rng.uniform(*ar.grey_gamma)),
        psf_variant=int(rng.integers(0, len(PSF_VARIANTS))),
        fps=round(float(rng.uniform(*ar.fps)), 2),
        n_frames=n_frames,
        nerve_offset_mm=float(rng.uniform(*ar.probe_offset_frac)) * spacing * config.width,
        speckle_reduction_px=float(rng.uniform(*ar.speckle_reduction_px)),
        quality=sample_quality(rng, config.quality, grade),
    )


def clip_sweep(spec: ClipSpec, acq: AcquisitionParams, motion: MotionParams, width_mm: float) -> Sweep | None:
    """The clip's slide off (or onto) the nerve, or ``None``: a transverse clip sweeps with
    probability ``config.sweep_off``, drawn from a stream of its own (so clips that do not sweep,
    and every clip of a set with ``sweep_off == 0``, are what they were without the option)."""
    cfg = spec.config
    if cfg.sweep_off <= 0 or not spec.plane.startswith("T"):
        return None
    rng = np.random.default_rng(_seq(cfg.seed, spec.participant, _SWEEP_KEY, PLANES.index(spec.plane), SIDES.index(spec.side)))
    if rng.random() >= cfg.sweep_off:
        return None
    return sample_sweep(rng, acq.n_frames, acq.fps, width_mm, acq.nerve_offset_mm, motion)


def clip_draws(spec: ClipSpec) -> tuple[np.random.Generator, AcquisitionParams, MotionParams]:
    """The first draws of ``spec``'s clip: its acquisition and its motion (sweep included), and
    the random stream the rest of the clip is drawn from. A clip's probe motion is known from
    these alone (:func:`ultramn.data.synth.motion.frame_state`), without rendering it."""
    cfg = spec.config
    rng = np.random.default_rng(_seq(cfg.seed, spec.participant, _CLIP_KEY, PLANES.index(spec.plane), SIDES.index(spec.side)))
    acq = sample_acquisition(rng, cfg, spec.grade)
    motion_p = sample_motion(rng, cfg.motion, spec.plane)
    sweep = clip_sweep(spec, acq, motion_p, cfg.width * acq.pixel_spacing_mm)
    return rng, acq, replace(motion_p, sweep=sweep)


def generate_clip(spec: ClipSpec) -> GeneratedClip:
    """Generate one clip (frames, nerve masks) of ``spec``."""
    cfg = spec.config
    rc = cfg.render
    h, w = cfg.height, cfg.width
    anatomy = side_anatomy(cfg, spec.participant, spec.side)
    rng, acq, motion_p = clip_draws(spec)
    s = acq.pixel_spacing_mm
    width_mm, depth_mm = w * s, h * s
    sweep = motion_p.sweep
    lat, ax = motion_margins_mm(motion_p, width_mm, depth_mm)
    reach = abs(sweep.distance_mm) if sweep else 0.0  # the canvas grows on the sweep's side only
    canvas = Canvas(
        shape=(math.ceil((depth_mm + 2 * ax) / s), math.ceil((width_mm + 2 * lat + reach) / s)),
        spacing_mm=s,
        z0_mm=-ax,
        x0_mm=-width_mm / 2 - lat - (reach if sweep and sweep.distance_mm < 0 else 0.0),
    )
    maps = render_scene(spec.plane, anatomy, canvas, acq.nerve_offset_mm, spec.side == "L", rng, rc)
    field_a, field_b = scatterer_fields(rng, canvas, rc.scatterer_presmooth_px)
    psf = PsfBank(load_profiles(PSF_VARIANTS[acq.psf_variant]), (h, w), s, rc.depth_bands)
    former = BModeFormer(acq, psf, rc, (h, w))
    former.seed_noise(rng)
    motion = ClipMotion(motion_p, maps, (h, w), s, acq.fps)
    reverb = reverberation(acq.quality, rng, (h, w), s, LEVELS.skin_entry)

    n_canvas = canvas.shape[0] * canvas.shape[1]
    stack = np.empty((2, n_canvas), np.float32)  # the complex tissue field (re, im): bilinear
    static = np.stack([maps.atten.ravel(), maps.nerve.ravel()])  # attenuation, nerve: nearest
    aniso_idx = np.flatnonzero(maps.aniso)
    aniso_val = maps.aniso.ravel()[aniso_idx]
    aniso_ang = maps.fibre_angle.ravel()[aniso_idx]
    echo_flat = maps.echo.ravel()
    inv_w2 = np.float32(1.0 / rc.anisotropy_width_rad**2)
    theta = float(rng.uniform(0, 2 * np.pi))

    frames = np.empty((acq.n_frames, h, w), np.uint8)
    masks = np.empty((acq.n_frames, h, w), np.uint8)
    for t in range(acq.n_frames):
        st = motion.state(t)
        echo_t = echo_flat.copy()
        off2 = (aniso_ang + np.float32(st.tilt_rad)) ** 2 + np.float32(st.elevation_tilt_rad**2)
        echo_t[aniso_idx] += aniso_val * (np.float32(0.25) + np.float32(0.75) * np.exp(-off2 * inv_w2))
        scat = (np.float32(np.cos(theta)) * field_a + np.float32(np.sin(theta)) * field_b).ravel()
        stack[0] = scat.real * echo_t
        stack[1] = scat.imag * echo_t
        rows, cols = motion.coords(st)
        g, near = bilinear_gather(stack, canvas.shape, rows, cols, static)
        assert near is not None
        field = (g[0] + 1j * g[1]).astype(np.complex64)
        frames[t] = former.frame(field, near[0], t, rng, reverb)
        masks[t] = near[1] > 0.5
        theta += motion_p.decorrelation_rad * (1.0 + 0.3 * float(rng.standard_normal()))
    return GeneratedClip(ClipArrays(frames=frames, masks=masks), acq)


def _run_spec(spec: ClipSpec, root: Path) -> ClipRecord:
    """Generate ``spec``, write its clip file under ``root``; returns its manifest row."""
    clip = generate_clip(spec)
    rel = f"clips/{spec.clip_id}.npz"
    write_clip(root / rel, clip.arrays)
    acq = clip.acquisition
    t, h, w = clip.arrays.frames.shape
    return ClipRecord(
        clip_id=spec.clip_id,
        participant_id=spec.participant_id,
        side=spec.side,
        plane=spec.plane,
        quality=acq.quality.grade,
        pixel_spacing_mm=acq.pixel_spacing_mm,
        fps=acq.fps,
        n_frames=t,
        height=h,
        width=w,
        split="",
        source=SOURCE,
        file=rel,
    )


def dataset_specs(config: SynthConfig) -> list[ClipSpec]:
    """All clips of a dataset: participants x sides x planes (8 per participant), in order."""
    return [ClipSpec(config, p, plane, side) for p in range(config.participants) for side in SIDES for plane in PLANES]


def _fallback_splits(records: list[ClipRecord], seed: int) -> list[ClipRecord]:
    """Participant-level train/val/test (0.7/0.15/0.15) from a seeded permutation."""
    pids = sorted({r.participant_id for r in records})
    order = np.random.default_rng(_seq(seed, 2**31 - 1)).permutation(len(pids))
    n = len(pids)
    n_train = max(1, round(SPLIT_RATIOS[0] * n)) if n else 0
    n_val = round(SPLIT_RATIOS[1] * n) if n >= 3 else 0
    split_of: dict[str, str] = {}
    for rank, i in enumerate(order):
        split_of[pids[i]] = SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_val else SPLITS[2]
    return [r.with_split(split_of[r.participant_id]) for r in records]


def assign_dataset_splits(records: list[ClipRecord], seed: int) -> list[ClipRecord]:
    """Participant-level splits: :func:`ultramn.data.splits.assign_splits` when present."""
    try:
        from ultramn.data.splits import assign_splits
    except ImportError:
        return _fallback_splits(records, seed)
    return list(assign_splits(records, ratios=SPLIT_RATIOS, seed=seed))


def _worker_init(parent_pid: int) -> None:
    """Start of a worker process: Ctrl-C is the parent's to handle (it stops the pool), and
    the worker ends with the parent, even when the parent is killed (Linux
    ``PR_SET_PDEATHSIG``), instead of waiting forever for work as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def _remove_partial(out: Path, specs: Iterable[ClipSpec]) -> None:
    """Remove the temporary files of clips whose writing was cut short (``write_clip``'s ``.tmp``)."""
    for spec in specs:
        (out / f"clips/{spec.clip_id}.npz.tmp").unlink(missing_ok=True)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: end the workers (a clip half-way is lost, queued clips never start).

    The pool then finds its workers gone and fails every future it still holds with
    ``BrokenProcessPool``. No future is cancelled first: on Python 3.11 the pool's manager
    thread then tried to fail a cancelled future too and printed an ``InvalidStateError``
    traceback under the "interrupted" message (a race seen in CI).
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
    pool.shutdown(wait=True)


def _run_parallel(specs: list[ClipSpec], out: Path, workers: int, done: Callable[[int, ClipRecord], None]) -> None:
    """Generate ``specs`` in ``workers`` processes, at most ``2 * workers`` clips queued at a time;
    ``done(index, record)`` for each finished clip. An error or an interrupt stops every worker
    at once and is raised."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
    todo = iter(enumerate(specs))
    pending: dict[Future[ClipRecord], int] = {}
    try:
        for i, spec in itertools.islice(todo, 2 * workers):
            pending[pool.submit(_run_spec, spec, out)] = i
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                done(pending[fut], fut.result())  # a failed clip stays pending: its .tmp is removed below
                del pending[fut]
                nxt = next(todo, None)
                if nxt is not None:
                    pending[pool.submit(_run_spec, nxt[1], out)] = nxt[0]
    except BaseException:
        in_flight = [specs[i] for i in pending.values()]
        _stop_pool(pool)
        _remove_partial(out, in_flight)
        raise
    pool.shutdown(wait=True)


def _claim_output(out: Path) -> list[ClipRecord]:
    """Make ``out`` ready for a new synthetic dataset; returns the rows of the one it replaces.

    A folder with no manifest is used as it is. An earlier synthetic dataset (every row
    ``source=synthetic``) is replaced: its manifest is removed before any clip is written,
    so an interrupted run leaves no manifest describing files it has overwritten. Any other
    manifest (an import, or a mix) is refused: its rows would be lost.
    """
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is not a folder")
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        return []
    try:
        old = read_manifest(out)
    except ManifestError as exc:
        raise UserInputError(f"--out {out} holds a manifest that is not a dataset's ({exc}); choose another folder") from exc
    foreign = [r for r in old if r.source != SOURCE]
    if foreign:
        raise UserInputError(
            f"--out {out} holds a dataset with {len(foreign)} clip(s) that are not synthetic "
            f"(e.g. {foreign[0].clip_id}, source {foreign[0].source!r}); a synthetic set would replace "
            "its manifest: choose another folder"
        )
    manifest.unlink()
    return old


def _remove_stale(out: Path, old: list[ClipRecord], new: list[ClipRecord]) -> None:
    """Delete the clip files of the replaced synthetic dataset that the new one does not have."""
    keep = {r.clip_id for r in new}
    for r in old:
        if r.clip_id not in keep and r.file == f"clips/{r.clip_id}.npz":
            (out / r.file).unlink(missing_ok=True)


def plan_dataset_workers(config: SynthConfig, requested: int | None) -> WorkerPlan:
    """Workers for ``config``'s dataset: ``requested`` (default one per CPU), at most one per
    clip, as many as this machine's available memory holds (:mod:`ultramn.data.synth.memory`).

    Raises :class:`UserInputError` when one clip alone does not fit.
    """
    frames = config.frames or config.acquisition.frames[1]
    n_clips = len(PLANES) * len(SIDES) * config.participants
    return plan_workers(config.height, config.width, frames, requested, n_clips, available_bytes(), sweep=config.sweep_off > 0)


def generate_dataset(
    config: SynthConfig, out: Path, workers: int | None = None, progress: Callable[[int], None] | None = None
) -> list[ClipRecord]:
    """Write ``out/clips/*.npz`` and ``out/manifest.csv``; returns the manifest rows.

    ``workers`` processes (default :func:`plan_dataset_workers`: one per CPU as memory allows,
    at most one per clip); ``progress(n)``
    is called after every finished clip with the number of clips just finished (1).

    ``out`` may be new, a folder without a manifest, or an earlier synthetic dataset, which
    is replaced (its manifest is removed first; its clips that the new set lacks at the end);
    a folder holding any other dataset raises :class:`UserInputError`. The manifest is
    written last: an interrupted run leaves none (and no half-written clip file).
    """
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UserInputError(f"--workers must be in [1, {MAX_WORKERS}], got {workers}")
    specs = dataset_specs(config)
    n_workers = min(workers or plan_dataset_workers(config, None).workers, len(specs))
    warm_cache()  # compute the PSF once here, not in every worker
    old = _claim_output(out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[ClipRecord | None] = [None] * len(specs)

    def done(i: int, record: ClipRecord) -> None:
        records[i] = record
        if progress:
            progress(1)

    if n_workers == 1:
        for i, spec in enumerate(specs):
            try:
                record = _run_spec(spec, out)
            except BaseException:
                _remove_partial(out, [spec])
                raise
            done(i, record)
    else:
        _run_parallel(specs, out, n_workers, done)
    finished = [r for r in records if r is not None]
    finished = assign_dataset_splits(finished, config.seed)
    write_manifest(out, finished)
    _remove_stale(out, old, finished)
    return finished
