"""How much memory generating one synthetic clip takes, and how many worker processes fit.

Each worker holds one clip at a time: the scene's maps on a canvas a little larger than the
frame (motion margins; per pixel, plus per row for the depth-dependent PSF bank), then the
clip's frames and masks (``uint8 [T,H,W]`` each) and their compressed write. The constants
are fitted to the peak resident memory (``ru_maxrss``) of one process per clip, measured by
``bench/bench_synth_memory.py`` (docs/benchmarks.md, "Synthetic data memory"), with
:data:`SAFETY` on top, so the estimate errs high.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ultramn.errors import UserInputError

MIB = 1 << 20
GIB = 1 << 30

#: The interpreter, numpy and the PSF cache of one worker process (measured 52 MiB).
BASE_BYTES = 64 * MIB
#: Scene maps, tissue fields and B-mode buffers per frame pixel (fitted 300 B).
PER_PIXEL_BYTES = 300
#: The depth-dependent PSF bank and per-row buffers, per image row (fitted 58 KiB).
PER_ROW_BYTES = 60 * 1024
#: Frames and masks (1 B each) and the compressed write, per pixel per frame (measured 2.6-3.7 B).
PER_FRAME_PIXEL_BYTES = 4.0
#: A sweep (``--sweep-off``) widens the canvas on one side by up to 0.7 x (W + H) columns: bytes
#: per row per column of ``W + H`` (fitted by ``bench/bench_synth_memory.py --sweep``).
SWEEP_BYTES = 120
#: Factor on top of the fit.
SAFETY = 1.15
#: Share of the available memory the workers may plan to use together.
USABLE_SHARE = 0.8


def clip_peak_bytes(height: int, width: int, frames: int, sweep: bool = False) -> int:
    """Estimated peak resident bytes of a process generating one ``[frames, height, width]`` clip
    (``sweep``: one that slides off the nerve)."""
    pixels = height * width
    raw = BASE_BYTES + PER_PIXEL_BYTES * pixels + PER_ROW_BYTES * height + PER_FRAME_PIXEL_BYTES * pixels * frames
    if sweep:
        raw += SWEEP_BYTES * height * (height + width)
    return int(raw * SAFETY)


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's ``MemAvailable`` in bytes, or ``None`` where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start, and the note to show when memory lowered the number."""

    workers: int
    per_worker_bytes: int
    note: str | None = None


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def plan_workers(
    height: int,
    width: int,
    frames: int,
    requested: int | None,
    n_clips: int,
    available: int | None,
    cpus: int | None = None,
    sweep: bool = False,
) -> WorkerPlan:
    """Workers for ``n_clips`` clips of at most ``frames`` frames: ``requested`` (default one per
    CPU), at most one per clip, and no more than :data:`USABLE_SHARE` of ``available`` bytes holds.

    Raises :class:`UserInputError` when one clip alone needs more than ``available`` bytes.
    ``available=None`` (unknown) plans on CPUs alone; ``sweep``: clips may slide off the nerve.
    """
    per_worker = clip_peak_bytes(height, width, frames, sweep)
    wanted = max(1, min(requested or cpus or os.cpu_count() or 1, n_clips))
    if available is None:
        return WorkerPlan(wanted, per_worker)
    if per_worker > available:
        raise UserInputError(
            f"one clip of {frames} frames of {height} x {width} needs about {_gib(per_worker)} of memory to generate, "
            f"and {_gib(available)} is available: use a smaller --size or --frames, or free memory"
        )
    fits = max(1, int(available * USABLE_SHARE // per_worker))
    if fits >= wanted:
        return WorkerPlan(wanted, per_worker)
    asked = f"--workers {requested}" if requested else f"{wanted} workers (one per CPU)"
    note = (
        f"{asked} would need about {_gib(wanted * per_worker)} of memory "
        f"({_gib(per_worker)} each) and {_gib(available)} is available: using {fits}"
    )
    return WorkerPlan(fits, per_worker, note)
