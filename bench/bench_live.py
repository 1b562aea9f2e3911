"""Benchmark the live stream (``WS /v1/live``): latency per frame and frames skipped, by frame rate.

Run against a running stack (``make up``):
``.venv/bin/python bench/bench_live.py [--gateway http://127.0.0.1:8080] [--fps 10 25 50] [--seconds 8] [--size 256]``.
For each frame rate, a synthetic transverse clip (``ultramn synth``'s generator, looped) is
sent as PNG frames at that rate for ``--seconds``; the script records when each frame was
sent and when its result (or skip) came back. Prints per rate: frames sent, analyses run,
mean frames per analysis, frames skipped, and the latency from sending a frame to receiving
its result (median, 95th percentile, ms), with the server's own analysis time per window.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import threading
import time

import numpy as np
from PIL import Image
from websockets.sync.client import connect


def frames_png(size: int, n: int = 48) -> list[bytes]:
    """``n`` frames of a synthetic TW clip at ``size`` x ``size``, PNG-encoded."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(height=size, width=size, frames=n, seed=5), 0, "TW", "R"))
    out = []
    for frame in clip.arrays.frames:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def run(url: str, key: str | None, frames: list[bytes], fps: float, seconds: float) -> dict[str, float]:
    """Stream at ``fps`` for ``seconds``; the figures of one rate."""
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    skipped: list[int] = []
    analysis_ms: list[float] = []
    sizes: list[int] = []
    query = f"?key={key}" if key else ""
    with connect(url.replace("http://", "ws://").rstrip("/") + f"/v1/live{query}", max_size=None) as ws:
        json.loads(ws.recv(timeout=30))  # ready

        def reader() -> None:
            try:
                while True:
                    msg = json.loads(ws.recv(timeout=60))
                    now = time.perf_counter()
                    if msg["type"] == "frames":
                        for f in msg["frames"]:
                            got[f["index"]] = now
                        skipped.extend(msg["skipped"])
                        analysis_ms.append(msg["analysis_ms"])
                        sizes.append(len(msg["frames"]))
                    elif msg["type"] == "end":
                        return
            except Exception:  # closed
                return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        n = int(seconds * fps)
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.perf_counter()
            ws.send(frames[i % len(frames)])
        ws.send(json.dumps({"type": "end"}))
        thread.join(timeout=120)
    latency = sorted((got[i] - sent[i]) * 1000.0 for i in got)
    return {
        "fps": fps,
        "frames": n,
        "analyses": len(analysis_ms),
        "frames_per_analysis": statistics.mean(sizes) if sizes else 0.0,
        "skipped": len(skipped),
        "latency_median_ms": statistics.median(latency) if latency else float("nan"),
        "latency_p95_ms": latency[int(0.95 * (len(latency) - 1))] if latency else float("nan"),
        "analysis_ms_median": statistics.median(analysis_ms) if analysis_ms else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--fps", type=float, nargs="+", default=[10.0, 25.0, 50.0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    args = parser.parse_args()
    frames = frames_png(args.size)
    header = ("fps", "frames", "analyses", "frames/an.", "skipped", "lat. med ms", "lat. p95 ms", "server ms")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 6, 8, 10, 7, 11, 11, 9), strict=True)))
    for fps in args.fps:
        r = run(args.gateway, args.api_key, frames, fps, args.seconds)
        print(
            f"{r['fps']:5.0f} {r['frames']:6d} {r['analyses']:8d} {r['frames_per_analysis']:10.2f} {r['skipped']:7d} "
            f"{r['latency_median_ms']:11.0f} {r['latency_p95_ms']:11.0f} {r['analysis_ms_median']:9.0f}"
        )


if __name__ == "__main__":
    main()
