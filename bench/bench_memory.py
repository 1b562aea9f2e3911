"""Gateway memory benchmark: the gateway process's peak RSS while it analyses one clip, by clip size.

Starts the embedded tritonserver (cpu target, the shipped weights when present) and the
real gateway app in a **child process** (uvicorn, one worker), then, for each clip size,
writes an NPZ clip (synthetic frames scaled up to the size), resets the child's peak-RSS
mark (``/proc/PID/clear_refs`` = 5), uploads the clip over HTTP, polls until the analysis
finished, and reads the child's ``VmHWM``. The upload is streamed from disk by this
process, so the child's figure is the gateway's own: the upload copy, the decode check,
the decoded clip, the pipeline (ROI, windows, stitching, masks) and the mask archive.

The figure to read is ``(peak - RSS before) / pixels``: the bytes the gateway needs per
decoded pixel (frames x height x width), which ``ULTRAMN_MAX_CLIP_PIXELS`` bounds. Triton's
own memory (a separate process) is not counted.

    .venv/bin/python bench/bench_memory.py --sizes 60x256x256 120x512x512 120x1024x1024 120x2048x2048 --out /tmp/bench_memory.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from bench.bench_batch import emit_report, machine
from bench.report import report_path


@dataclass(frozen=True)
class Size:
    """A clip size: frames x height x width."""

    frames: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> Size:
        n, h, w = (int(v) for v in text.lower().split("x"))
        return cls(n, h, w)

    @property
    def pixels(self) -> int:
        return self.frames * self.height * self.width

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


@dataclass(frozen=True)
class Measure:
    """One analysis: RSS before and peak during, in bytes; status and seconds."""

    size: Size
    upload_bytes: int
    rss_before: int
    peak: int
    seconds: float
    status: str

    @property
    def bytes_per_pixel(self) -> float:
        return (self.peak - self.rss_before) / self.size.pixels


def proc_kib(pid: int, field: str) -> int:
    """``field`` (``VmRSS``, ``VmHWM``) of ``/proc/PID/status`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Reset the peak-RSS mark (``VmHWM``) of ``pid`` to its current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def write_clip(path: Path, size: Size, seed: int = 0) -> Path:
    """An uncompressed NPZ of ``uint8 [N,H,W]`` synthetic frames (made at 128x128, scaled up)."""
    from PIL import Image

    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    small = generate_clip(ClipSpec(SynthConfig(height=128, width=128, frames=min(size.frames, 16), seed=seed), 0, "TW", "R")).arrays.frames
    frames = np.empty((size.frames, size.height, size.width), np.uint8)
    for i in range(size.frames):
        frames[i] = np.asarray(Image.fromarray(small[i % len(small)]).resize((size.width, size.height), Image.Resampling.BILINEAR))
    np.savez(path, frames=frames, pixel_spacing_mm=np.float32(0.08 * 128 / size.width), fps=np.float32(25))
    return path


def serve(triton_url: str, data: Path, url_file: Path) -> int:
    """Child mode: the gateway app on a free port (one worker) until stdin closes."""
    from gateway.core.config import Settings
    from gateway.main import create_app
    from gateway.threaded_server import serve_in_thread

    settings = Settings(data_dir=data, triton_url=triton_url, workers=1, log_level="WARNING")
    with serve_in_thread(create_app(settings)) as url:
        url_file.write_text(url)
        sys.stdin.read()
    return 0


def measure(client: httpx.Client, pid: int, path: Path, size: Size) -> Measure:
    """Upload ``path`` and wait for its analysis; the child's RSS before and peak during."""
    time.sleep(0.5)
    reset_peak(pid)
    before = proc_kib(pid, "VmRSS")
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        resp = client.post("/v1/analyses", files={"file": (path.name, fh)})
    if resp.status_code != 202:
        return Measure(size, path.stat().st_size, before, proc_kib(pid, "VmHWM"), time.perf_counter() - t0, f"HTTP {resp.status_code}")
    job_id = resp.json()["id"]
    while (job := client.get(f"/v1/analyses/{job_id}", params={"include_frames": "false"}).json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    peak = proc_kib(pid, "VmHWM")
    client.delete(f"/v1/analyses/{job_id}")
    return Measure(size, path.stat().st_size, before, peak, seconds, job["status"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=Size.parse, default=[Size.parse(s) for s in ("60x256x256", "120x512x512", "120x1024x1024")])
    p.add_argument("--rounds", type=int, default=1, help="measure every size this many times (sizes interleaved)")
    p.add_argument("--out", type=report_path, default=None, help="write the markdown report here too")
    p.add_argument("--serve", nargs=3, metavar=("TRITON_URL", "DATA_DIR", "URL_FILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.serve[0], Path(args.serve[1]), Path(args.serve[2]))

    from tests.serving.fixtures import build_served_repository
    from ultramn.contract import CONTRACT
    from ultramn.serving.embedded import start_on_free_ports

    results: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        work = Path(tmp)
        repo, _, checkpoint = build_served_repository(work)
        server = start_on_free_ports(repo, [CONTRACT.name], log_path=work / "tritonserver.log")
        url_file = work / "url"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", server.grpc_url, str(work / "gateway"), str(url_file)],
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while not url_file.is_file():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the gateway child did not start")
                time.sleep(0.2)
            with httpx.Client(base_url=url_file.read_text(), timeout=600) as client:
                warm = write_clip(work / "warm.npz", Size(8, 128, 128))
                measure(client, child.pid, warm, Size(8, 128, 128))  # imports, first Triton call
                for r in range(args.rounds):
                    for size in args.sizes:
                        path = write_clip(work / f"clip_{size}.npz", size)
                        m = measure(client, child.pid, path, size)
                        path.unlink()
                        results.append(m)
                        print(
                            f"round {r + 1} {size}: {m.status}, RSS before {m.rss_before / 2**20:.0f} MiB, peak {m.peak / 2**20:.0f} MiB, "
                            f"{m.bytes_per_pixel:.2f} B/pixel, {m.seconds:.1f} s",
                            flush=True,
                        )
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=60)
            server.stop()

    lines = [
        f"Machine: {machine()}. Model: {checkpoint.name}. Gateway: one worker, in its own process; Triton not counted.",
        "",
        "| clip (frames x H x W) | pixels (M) | upload MB | RSS before MiB | peak MiB | (peak - before) / pixel | seconds | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        cells = [
            str(m.size),
            f"{m.size.pixels / 1e6:.1f}",
            f"{m.upload_bytes / 1e6:.1f}",
            f"{m.rss_before / 2**20:.0f}",
            f"{m.peak / 2**20:.0f}",
            f"{m.bytes_per_pixel:.2f} B",
            f"{m.seconds:.1f}",
            m.status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
