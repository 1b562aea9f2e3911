"""Gateway end-to-end benchmark: one clip's upload -> result, per-stage ms, overhead vs direct Triton, concurrency.

Starts the local stack here like ``make up`` does (``ensure_onnx`` on a temporary copy of
``triton_models/cpu`` -> the embedded tritonserver on free ports -> the gateway app served by
uvicorn in a thread, ``ULTRAMN_WORKERS`` = ``--concurrency``), then measures, in one run:

1. **end to end**: a 64-frame 256x256 synthetic clip (``ultramn.data.synth``) uploaded as
   NPZ (``frames``, ``fps``, ``pixel_spacing_mm``) to ``POST /v1/analyses?wait=true``;
   client wall time upload -> result JSON, frames/s, and the result's ``timings_ms`` per
   stage; medians over ``--repeats`` after ``--warmup``;
2. **overhead**: the same clip "direct": the same preprocessing in-process
   (``ultramn.preprocess`` on the gateway's ROI crop, ``ultramn.windowing``), the same
   windows sent with ``tritonclient.grpc.aio`` (at most ``infer_concurrency`` in flight, as
   in the gateway), stitched. Gateway and direct alternate (A B A B ...) so that load from
   other processes hits both; ratio = median gateway / median direct (goal <= 1.25x). The
   ROI box is found once, untimed, so that direct sends exactly the gateway's windows (the
   ROI detection is gateway work, counted in its time). At the end the gateway's stitched
   plane probabilities (``masks.npz``) are compared with direct's;
3. **concurrency**: ``--clips`` uploads one at a time vs ``--concurrency`` at a time
   (clips/s, frames/s), levels interleaved, ``--rounds`` times.

The model is ``--checkpoint`` (default ``models/ultramn.pt``) when it exists, else an
untrained ``build_model("unet3d", base_width=8, depth=4)`` saved in the temporary folder
(said so in the output). The committed ``triton_models/cpu`` is never written.

    .venv/bin/python bench/bench_gateway.py --out /tmp/bench_gateway.md
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcaio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import report_path
from gateway.core.config import Settings
from gateway.main import create_app
from gateway.pipeline.roi import RoiConfig, find_roi
from gateway.threaded_server import serve_in_thread
from gateway.triton_client import CHANNEL_ARGS
from ultramn.contract import CONTRACT, MASK_PROB_SCALE
from ultramn.preprocess import normalize_intensity, resize_frames
from ultramn.serving.build import ensure_onnx
from ultramn.serving.embedded import EmbeddedTriton, start_on_free_ports
from ultramn.windowing import stitch_masks, stitch_planes, window_indices

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("decode", "roi", "preprocess", "windows", "inference", "stitch", "postprocess", "total")
UNTRAINED_HPARAMS: dict[str, int] = {"base_width": 8, "depth": 4}


# --------------------------------------------------------------------------- machine, setup


def cpu_model() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` or ``platform`` as fall-backs)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def load_avg() -> str:
    """1/5/15-minute load averages."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def prepare_checkpoint(requested: Path, work: Path) -> tuple[Path, str]:
    """``(checkpoint, description)``: ``requested`` when it exists, else a saved untrained model."""
    if requested.is_file():
        return requested, f"{requested} (trained)"
    import torch

    from ultramn.model import build_model, save_checkpoint

    torch.manual_seed(0)
    path = save_checkpoint(work / "untrained.pt", build_model("unet3d", **UNTRAINED_HPARAMS), "unet3d", dict(UNTRAINED_HPARAMS))
    hp = ", ".join(f"{k}={v}" for k, v in UNTRAINED_HPARAMS.items())
    return path, f"UNTRAINED unet3d ({hp}): {requested} not found; speed only, masks meaningless"


def prepare_repository(work: Path, checkpoint: Path) -> Path:
    """A temporary copy of ``triton_models/cpu`` (no ONNX files) with the ONNX model built from ``checkpoint``."""
    repo = work / "cpu"
    shutil.copytree(ROOT / "triton_models" / "cpu", repo, ignore=shutil.ignore_patterns("*.onnx", "*.onnx.json"))
    ensure_onnx(repo, checkpoint)
    return repo


def gateway_settings(data: Path, triton_url: str, workers: int) -> Settings:
    """The benchmarked gateway's settings: ``workers`` workers, a deep queue, long waits."""
    return Settings(data_dir=data, triton_url=triton_url, workers=workers, queue_max=256, wait_timeout_s=300.0, log_level="WARNING")


@dataclass
class TestClip:
    """One synthetic clip: frames and its NPZ upload."""

    frames: npt.NDArray[np.uint8]
    fps: float
    spacing_mm: float
    npz: bytes


def make_clip(seed: int, frames: int) -> TestClip:
    """A 256x256 synthetic TW clip of ``frames`` frames, as NPZ bytes with fps and pixel spacing."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(participants=1, seed=seed, frames=frames), 0, "TW", "R"))
    arr = clip.arrays.frames
    buf = io.BytesIO()
    np.savez_compressed(
        buf, frames=arr, fps=np.float64(clip.acquisition.fps), pixel_spacing_mm=np.float64(clip.acquisition.pixel_spacing_mm)
    )
    return TestClip(arr, clip.acquisition.fps, clip.acquisition.pixel_spacing_mm, buf.getvalue())


# --------------------------------------------------------------------------- the two paths


async def gateway_analyse(http: httpx.AsyncClient, clip: TestClip) -> tuple[float, dict[str, Any]]:
    """Upload -> result (``wait=true``); ``(seconds, response JSON)``."""
    t0 = time.perf_counter()
    resp = await http.post("/v1/analyses", files={"file": ("clip.npz", clip.npz, "application/octet-stream")}, data={"wait": "true"})
    body: dict[str, Any] = resp.json()
    seconds = time.perf_counter() - t0
    if resp.status_code != 200 or body.get("status") != "succeeded":
        raise RuntimeError(f"gateway answered {resp.status_code}: {str(body)[:500]}")
    return seconds, body


class Direct:
    """Preprocess + window in-process, windows to Triton over gRPC aio (bounded concurrency), stitch."""

    def __init__(self, url: str, concurrency: int, stride: int) -> None:
        self.client = grpcaio.InferenceServerClient(url, channel_args=CHANNEL_ARGS)
        self.semaphore = asyncio.Semaphore(concurrency)
        self.stride = stride
        self.spec = CONTRACT.inputs[0]
        self.outputs = [o.name for o in CONTRACT.served_outputs]

    async def close(self) -> None:
        await self.client.close()

    async def _window(self, window: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(window[None, None], dtype=self.spec.numpy_dtype)
        inp = grpcaio.InferInput(self.spec.name, list(batch.shape), self.spec.triton_datatype)
        inp.set_data_from_numpy(batch)
        async with self.semaphore:
            result = await self.client.infer(CONTRACT.name, [inp], outputs=[grpcaio.InferRequestedOutput(n) for n in self.outputs])
        plane, mask = (result.as_numpy(n) for n in self.outputs)
        assert plane is not None and mask is not None
        return plane[0].astype(np.float32), mask[0, 0].astype(np.float32) * np.float32(1.0 / MASK_PROB_SCALE)

    async def run(self, frames: npt.NDArray[np.uint8], roi: tuple[int, int, int, int]) -> tuple[float, np.ndarray, np.ndarray]:
        """``(seconds, frame planes [N,P], frame mask probs [N,H,W])``."""
        t0 = time.perf_counter()
        x0, y0, x1, y1 = roi
        model_frames = normalize_intensity(resize_frames(frames[:, y0:y1, x0:x1], CONTRACT.height, CONTRACT.width))
        indices = window_indices(len(frames), CONTRACT.window_frames, self.stride)
        outs = await asyncio.gather(*(self._window(model_frames[idx]) for idx in indices))
        planes = stitch_planes(np.stack([p for p, _ in outs]), indices, len(frames))
        masks = stitch_masks(np.stack([m for _, m in outs]), indices, len(frames))
        return time.perf_counter() - t0, planes, masks


# --------------------------------------------------------------------------- experiments


@dataclass
class Level:
    """One throughput run."""

    concurrency: int
    clips: int
    frames: int
    seconds: float

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds


async def throughput(http: httpx.AsyncClient, clips: list[TestClip], n: int, concurrency: int) -> Level:
    """``n`` uploads (cycling over ``clips``), ``concurrency`` at a time (closed loop)."""
    queue: asyncio.Queue[TestClip] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(clips[i % len(clips)])
    frames = 0

    async def worker() -> None:
        nonlocal frames
        while not queue.empty():
            clip = queue.get_nowait()
            await gateway_analyse(http, clip)
            frames += len(clip.frames)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Level(concurrency, n, frames, time.perf_counter() - t0)


def span(seconds: list[float]) -> str:
    """``min-max`` in ms."""
    return f"{min(seconds) * 1e3:.0f}-{max(seconds) * 1e3:.0f}"


def med(values: list[float]) -> float:
    return float(statistics.median(values))


async def measure(args: argparse.Namespace, url: str, triton_url: str, settings: Settings, clips: list[TestClip]) -> dict[str, Any]:
    clip = clips[0]
    roi = find_roi(clip.frames, RoiConfig(enabled=settings.roi_enabled))
    direct = Direct(triton_url, settings.infer_concurrency, settings.default_stride)
    gw_s: list[float] = []
    dr_s: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as http:
        try:
            for i in range(args.warmup + args.repeats):
                g, body = await gateway_analyse(http, clip)
                d, planes, _ = await direct.run(clip.frames, roi)
                tag = "warm-up" if i < args.warmup else f"pair {i - args.warmup + 1}"
                print(f"{tag}: gateway {g * 1e3:7.0f} ms  direct {d * 1e3:7.0f} ms  ratio {g / d:.2f}", flush=True)
                if i >= args.warmup:
                    gw_s.append(g)
                    dr_s.append(d)
                    for s in STAGES:
                        stages[s].append(float(body["result"]["timings_ms"].get(s, float("nan"))))
                    last = body
            # the same windows? compare the gateway's stitched plane probabilities with direct's
            resp = await http.get(last["links"]["masks_npz"])
            resp.raise_for_status()
            with np.load(io.BytesIO(resp.content)) as npz:
                gw_planes = npz["plane_probs"]
                gw_roi = tuple(int(v) for v in npz["roi"])
            plane_diff = float(np.abs(gw_planes - planes).max())
        finally:
            await direct.close()
        levels: list[Level] = []
        await throughput(http, clips, args.concurrency, args.concurrency)  # warm-up at the high level
        for r in range(args.rounds):
            for c in (1, args.concurrency):
                lv = await throughput(http, clips, args.clips, c)
                print(f"round {r + 1} c={c}: {lv.clips_per_s:.2f} clips/s, {lv.frames_per_s:.1f} frames/s ({lv.seconds:.1f} s)", flush=True)
                levels.append(lv)
    return {
        "gateway_s": gw_s,
        "direct_s": dr_s,
        "stages": stages,
        "windows": int(last["progress"]["windows_total"]) if last.get("progress") else None,
        "roi": roi,
        "gw_roi": gw_roi,
        "plane_diff": plane_diff,
        "levels": levels,
    }


# --------------------------------------------------------------------------- report


def report(args: argparse.Namespace, m: dict[str, Any], header: list[str], load_end: str, frames: int) -> str:
    gw, dr = med(m["gateway_s"]), med(m["direct_s"])
    pair = med([g / d for g, d in zip(m["gateway_s"], m["direct_s"], strict=True)])
    ratio = gw / dr
    st = {s: med(v) for s, v in m["stages"].items()}
    outside = gw * 1e3 - st["total"]
    levels: list[Level] = m["levels"]
    best = {c: max(lv.clips_per_s for lv in levels if lv.concurrency == c) for c in (1, args.concurrency)}
    best_f = {c: max(lv.frames_per_s for lv in levels if lv.concurrency == c) for c in (1, args.concurrency)}
    n = len(m["gateway_s"])
    hi = args.concurrency
    lines = [
        *header,
        f"- load average (1/5/15 min) at end: {load_end}",
        "",
        f"Clip: synthetic TW, {frames} frames of 256x256, NPZ (deflate) with fps + pixel_spacing_mm, "
        f"{m['windows']} windows of {CONTRACT.window_frames} frames at stride {m['stride']}; ROI {m['roi']}. "
        f"Medians of {n} interleaved gateway/direct pairs after {args.warmup} warm-up pair(s).",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| gateway upload -> result, 1 clip (median, min-max) | {gw * 1e3:.0f} ms ({span(m['gateway_s'])}) |",
        f"| gateway end to end | **{frames / gw:.1f} frames/s** |",
        f"| direct Triton (preprocess + windows + gRPC aio + stitch), 1 clip | {dr * 1e3:.0f} ms ({span(m['direct_s'])}), "
        f"{frames / dr:.1f} frames/s |",
        f"| gateway / direct (ratio of medians; median of pair ratios) | **{ratio:.2f}x**; {pair:.2f}x "
        f"(goal <= 1.25x: {'met' if ratio <= 1.25 else 'MISSED'}) |",
        f"| throughput, 1 upload at a time ({args.clips} clips, best of {args.rounds}) | {best[1]:.2f} clips/s, {best_f[1]:.1f} frames/s |",
        f"| throughput, {hi} concurrent uploads ({args.clips} clips, best of {args.rounds}) | {best[hi]:.2f} clips/s, "
        f"{best_f[hi]:.1f} frames/s |",
        f"| speed-up {args.concurrency} vs 1 | **{best[args.concurrency] / best[1]:.2f}x** |",
        "",
        "Per stage (the result's `timings_ms`, median over the measured gateway runs; decode = the request-time decode):",
        "",
        "| stage | ms | share of upload -> result |",
        "|---|---|---|",
    ]
    for s in STAGES:
        lines.append(f"| {s} | {st[s]:.1f} | {st[s] / (gw * 1e3):.0%} |")
    what = "outside the stages (HTTP upload, database, queue, response JSON)"
    lines.append(f"| {what} | {outside:.1f} | {outside / (gw * 1e3):.0%} |")
    lines += [
        "",
        "Throughput rounds:",
        "",
        "| round | concurrency | clips | wall s | clips/s | frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for i, lv in enumerate(levels):
        lines.append(f"| {i // 2 + 1} | {lv.concurrency} | {lv.clips} | {lv.seconds:.1f} | {lv.clips_per_s:.2f} | {lv.frames_per_s:.1f} |")
    same = "same" if tuple(m["roi"]) == m["gw_roi"] else f"DIFFERENT (gateway {m['gw_roi']})"
    lines += ["", f"Check: ROI {same}; max |gateway - direct| stitched plane probability = {m['plane_diff']:.2e}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "ultramn.pt", help="untrained unet3d when absent")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="synthetic clip seed (throughput clips: seed .. seed+3)")
    p.add_argument("--warmup", type=int, default=2, help="gateway/direct pairs not measured")
    p.add_argument("--repeats", type=int, default=7, help="measured gateway/direct pairs")
    p.add_argument("--clips", type=int, default=8, help="uploads per throughput run")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent uploads (and gateway workers)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved throughput rounds (1 vs --concurrency)")
    p.add_argument("--out", type=report_path, default=None, help="also write the markdown here")
    args = p.parse_args(argv)
    started = time.perf_counter()
    header = [
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
        f"- load average (1/5/15 min) at start: {load_avg()}",
        f"- command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    print("\n".join(header), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_gateway_") as tmp:
        work = Path(tmp)
        checkpoint, described = prepare_checkpoint(args.checkpoint, work)
        header.append(f"- model: {described}")
        print(header[-1], flush=True)
        repo = prepare_repository(work, checkpoint)
        clips = [make_clip(args.seed + i, args.frames) for i in range(4)]
        triton: EmbeddedTriton = start_on_free_ports(repo, [CONTRACT.name], log_path=work / "tritonserver.log")
        try:
            settings = gateway_settings(work / "gateway", triton.grpc_url, args.concurrency)
            with serve_in_thread(create_app(settings)) as url:
                header.append(
                    f"- stack: embedded tritonserver (cpu repository, `{repo.name}` copy) + gateway (uvicorn thread, "
                    f"workers={settings.workers}, infer_concurrency={settings.infer_concurrency}); setup took "
                    f"{time.perf_counter() - started:.0f} s"
                )
                m = asyncio.run(measure(args, url, triton.grpc_url, settings, clips))
                m["stride"] = settings.default_stride
        finally:
            triton.stop()
    header.append(f"- wall time of the whole run: {time.perf_counter() - started:.0f} s")
    text = report(args, m, header, load_avg(), args.frames)
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
