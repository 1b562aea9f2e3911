"""Peak memory of generating one synthetic clip, measured against the worker planner's estimate.

Run: ``.venv/bin/python bench/bench_synth_memory.py [--shapes 256x256x48 1024x1024x48 ...] [--plane LF]``.
Each shape ``HxWxT`` is generated and written (``.npz``) in a fresh process, as a
``ultramn synth`` worker does (the PSF cache filled beforehand, as ``ultramn synth``
does); its peak resident memory (``VmHWM``) is printed beside
:func:`ultramn.data.synth.memory.clip_peak_bytes`, which decides how many workers
``ultramn synth`` starts. The ratio estimate/measured must stay above 1 (the estimate errs
high). Not part of the tests (the largest shapes take minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from ultramn.data.synth.memory import MIB, clip_peak_bytes

DEFAULT_SHAPES = ("256x256x48", "256x256x400", "512x128x48", "512x512x48", "1024x256x48", "256x1024x48", "1024x512x48", "1024x1024x48")

#: Runs in the child: generate and write one clip, print its peak resident bytes as JSON. The
#: peak is the kernel's ``VmHWM`` of the child's own address space (``ru_maxrss`` can carry the
#: parent's resident size over the fork).
_CHILD = """
import json, sys
from pathlib import Path
from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, _run_spec
h, w, t, plane, root, sweep = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5]), float(sys.argv[6])
(root / "clips").mkdir(parents=True, exist_ok=True)
_run_spec(ClipSpec(SynthConfig(participants=1, seed=0, height=h, width=w, frames=t, sweep_off=sweep), 0, plane, "L"), root)
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
print(json.dumps({"peak": int(hwm.split()[1]) * 1024}))
"""


def measure(height: int, width: int, frames: int, plane: str, sweep: bool = False) -> int:
    """Peak resident bytes of a fresh process generating one clip of this shape (``sweep``: a
    transverse ``plane``'s clip sliding off the nerve). The PSF cache is filled first, here, as
    ``ultramn synth`` does before it starts its workers."""
    subprocess.run([sys.executable, "-c", "from ultramn.data.synth.psf import warm_cache; warm_cache()"], check=True)
    with tempfile.TemporaryDirectory() as root:
        cmd = [sys.executable, "-c", _CHILD, str(height), str(width), str(frames), plane, root, "1" if sweep else "0"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak"])


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"HxWxT"`` -> ``(H, W, T)``."""
    try:
        h, w, t = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be HxWxT (e.g. 512x512x48), got {text!r}") from None
    return h, w, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=parse_shape, nargs="+", default=[parse_shape(s) for s in DEFAULT_SHAPES])
    ap.add_argument("--plane", default="LF", choices=("TW", "TF", "LW", "LF"))
    ap.add_argument("--sweep", action="store_true", help="clips that slide off the nerve (transverse --plane only)")
    args = ap.parse_args()
    if args.sweep and not args.plane.startswith("T"):
        ap.error("--sweep needs a transverse --plane (TW or TF): longitudinal clips do not sweep")
    print(f"{'shape (HxWxT)':>16} {'measured MiB':>13} {'estimate MiB':>13} {'estimate/measured':>18}")
    worst = float("inf")
    for h, w, t in args.shapes:
        peak = measure(h, w, t, args.plane, args.sweep)
        est = clip_peak_bytes(h, w, t, args.sweep)
        worst = min(worst, est / peak)
        print(f"{f'{h}x{w}x{t}':>16} {peak / MIB:13.0f} {est / MIB:13.0f} {est / peak:18.2f}", flush=True)
    print(f"lowest ratio {worst:.2f} (must be > 1)")


if __name__ == "__main__":
    main()
