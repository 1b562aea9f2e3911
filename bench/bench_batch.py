"""Batch-processing benchmark: clips/s and frames/s of ``ultramn batch`` at concurrency 1 vs 4.

Starts the local stack here (the embedded tritonserver on the cpu target + the gateway app
served by uvicorn in a thread, ``ULTRAMN_WORKERS`` = the highest concurrency measured),
generates ``--clips`` synthetic clips (MP4, ``--frames`` frames of ``--size`` x ``--size``),
and runs the batch runner (:func:`ultramn.batch.runner.run_batch`, the code behind
``ultramn batch``) through the gateway, once per concurrency level and round, levels
interleaved; optionally (``--direct``) also straight on Triton (``gateway.batch_direct``).
The model is ``models/ultramn.pt`` when present, else the small untrained instance of the
real architecture the tests use.

    .venv/bin/python bench/bench_batch.py --clips 50 --concurrency 1 4 --out /tmp/bench_batch.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench.report import report_path
from gateway.core.config import Settings
from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.data.test_decoders import write_video
from tests.serving.fixtures import build_served_repository
from ultramn.batch.discover import Clip
from ultramn.batch.gateway_client import GatewayAnalyzer
from ultramn.batch.runner import run_batch
from ultramn.contract import CONTRACT
from ultramn.serving.embedded import start_on_free_ports


@dataclass
class Run:
    """One batch run."""

    path: str
    concurrency: int
    clips: int
    frames: int
    seconds: float
    failed: int

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds


def make_clips(folder: Path, n: int, frames: int, size: int) -> list[Clip]:
    """``n`` synthetic MP4 clips (planes and seeds vary)."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        cfg = SynthConfig(height=size, width=size, frames=frames, seed=i)
        arr = generate_clip(ClipSpec(cfg, 0, ["TW", "TF", "LW", "LF"][i % 4], "R")).arrays.frames
        path = write_video(folder / f"clip_{i:03d}.mp4", arr, "libx264", fps=25, colour=False)
        clips.append(Clip(path.name, path))
    return clips


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load average at start {load[0]:.2f}"


def emit_report(lines: list[str], out: Path | None) -> None:
    """Print the markdown report ``lines`` and write it to ``out`` too when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


def gateway_settings(data: Path, triton_url: str, workers: int) -> Settings:
    """The benchmarked gateway's settings: ``workers`` workers and a queue deep enough for every clip."""
    return Settings(data_dir=data, triton_url=triton_url, workers=workers, queue_max=256, log_level="WARNING")


async def one_run(path: str, url: str, clips: list[Clip], concurrency: int, out: Path, frames: int) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    if path == "gateway":
        analyzer = GatewayAnalyzer(url)
    else:
        from gateway.batch_direct import DirectAnalyzer

        analyzer = await DirectAnalyzer.create(url)  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        report = await run_batch(clips, analyzer, out, concurrency=concurrency, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        await analyzer.aclose()
    return Run(path, concurrency, len(clips), len(clips) * frames, seconds, report.failed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=50)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--direct", action="store_true", help="also measure --triton (in-process pipeline, no gateway)")
    p.add_argument("--out", type=report_path, default=None, help="write the markdown report here too")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        work = Path(tmp)
        repo, _, checkpoint = build_served_repository(work)
        clips = make_clips(work / "clips", args.clips, args.frames, args.size)
        server = start_on_free_ports(repo, [CONTRACT.name], log_path=work / "tritonserver.log")
        try:
            settings = gateway_settings(work / "gateway", server.grpc_url, max(args.concurrency))
            with serve_in_thread(create_app(settings)) as url:
                paths = {"gateway": url, **({"direct": server.grpc_url} if args.direct else {})}
                asyncio.run(one_run("gateway", url, clips[:4], 4, work / "warmup", args.frames))  # warm-up
                runs: list[Run] = []
                for r in range(args.rounds):
                    for name, target in paths.items():
                        for c in args.concurrency:
                            run = asyncio.run(one_run(name, target, clips, c, work / f"out-{name}-{c}-{r}", args.frames))
                            print(
                                f"{name} c={c}: {run.clips_per_s:.2f} clips/s, {run.frames_per_s:.1f} frames/s ({run.seconds:.1f} s)",
                                flush=True,
                            )
                            runs.append(run)
        finally:
            server.stop()

    lines = [
        f"Machine: {machine()}. Model: {checkpoint.name} ({'shipped' if checkpoint.name == 'ultramn.pt' else 'small untrained'}).",
        f"Batch: {args.clips} MP4 clips x {args.frames} frames of {args.size}x{args.size}; gateway workers = {max(args.concurrency)}.",
        "",
        "| path | concurrency | clips | wall s | clips/s | frames/s | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    best: dict[tuple[str, int], float] = {}
    for run in runs:
        cells = [
            run.path,
            run.concurrency,
            run.clips,
            f"{run.seconds:.1f}",
            f"{run.clips_per_s:.2f}",
            f"{run.frames_per_s:.1f}",
            run.failed,
        ]
        lines.append("| " + " | ".join(str(v) for v in cells) + " |")
        key = (run.path, run.concurrency)
        best[key] = max(best.get(key, 0.0), run.clips_per_s)
    lo, hi = min(args.concurrency), max(args.concurrency)
    for name in paths:
        if (name, lo) in best and (name, hi) in best:
            lines.append(
                f"\n{name}: speed-up concurrency {hi} vs {lo}: **{best[(name, hi)] / best[(name, lo)]:.2f}x** (best round of each)"
            )
    emit_report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
