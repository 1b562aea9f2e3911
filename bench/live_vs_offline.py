"""How far the live stream's per-frame results are from the same frames analysed as a finished clip.

Run against a running stack (``make up``):
``.venv/bin/python bench/live_vs_offline.py --clips data/synth --split test [--max-clips 40]``.
Each clip of the split (a dataset in the project's layout, e.g. ``ultramn synth``'s) is sent
twice: as an upload (``POST /v1/analyses``, the whole clip: windows before and after each
frame, stitched) and frame by frame over ``WS /v1/live``, one frame at a time, each sent after
the previous frame's answer (so nothing is skipped, and each live frame sees only the frames
before it). Per frame: the plane agrees or not, the nerve is reported by both or by one, and
the relative CSA difference where both report it. Prints the totals by view, and the same
against the annotation (CSA of the true mask: the live and the offline error side by side).
Not part of the tests.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from websockets.sync.client import connect

from ultramn.contract import PLANE_VIEWS
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest


def png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def npz(frames: np.ndarray, fps: float | None, spacing: float | None) -> bytes:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {"frames": frames}
    if fps:
        arrays["fps"] = np.float32(fps)
    if spacing:
        arrays["pixel_spacing_mm"] = np.float32(spacing)
    np.savez(buf, **arrays)
    return buf.getvalue()


def live_frames(gateway: str, frames: np.ndarray, spacing: float | None) -> list[dict[str, Any]]:
    query = f"?pixel_spacing_mm={spacing}" if spacing else ""
    out = []
    with connect(gateway.replace("http://", "ws://").rstrip("/") + "/v1/live" + query, max_size=None) as ws:
        json.loads(ws.recv(timeout=30))
        for frame in frames:
            ws.send(png(frame))
            out.extend(json.loads(ws.recv(timeout=120))["frames"])
        ws.send(json.dumps({"type": "end"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="dataset folder (manifest.csv, clips/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-clips", type=int, default=40)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    # clips with a pixel spacing only: the comparison is in mm²
    records = [r for r in read_manifest(args.clips) if args.split in ("all", r.split) and r.pixel_spacing_mm][: args.max_clips]
    stats: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(base_url=args.gateway, timeout=300) as http:
        for n, rec in enumerate(records, 1):
            clip = read_clip(args.clips / rec.file)
            frames = np.ascontiguousarray(clip.frames, dtype=np.uint8)
            up = http.post("/v1/analyses", files={"file": ("c.npz", npz(frames, rec.fps, rec.pixel_spacing_mm))}, data={"wait": "true"})
            up.raise_for_status()
            offline = up.json()["result"]["frames"]
            live = live_frames(args.gateway, frames, rec.pixel_spacing_mm)
            view = PLANE_VIEWS[rec.plane]
            s = stats.setdefault(view, {k: [] for k in ("plane", "both", "one", "rel", "live_err", "offline_err")})
            truth = clip.masks.reshape(len(frames), -1).sum(axis=1) * (rec.pixel_spacing_mm or 1.0) ** 2
            for i, (lv, of) in enumerate(zip(live, offline, strict=True)):
                s["plane"].append(float(lv["plane"] == of["plane"]))
                if lv["nerve_present"] and of["nerve_present"]:
                    s["both"].append(1.0)
                    s["rel"].append(abs(lv["csa_mm2"] - of["csa_mm2"]) / of["csa_mm2"])
                    s["live_err"].append(abs(lv["csa_mm2"] - truth[i]))
                    s["offline_err"].append(abs(of["csa_mm2"] - truth[i]))
                elif lv["nerve_present"] or of["nerve_present"]:
                    s["one"].append(1.0)
            print(f"\r{n}/{len(records)} clips", end="", file=sys.stderr)
    print(file=sys.stderr)
    header = ("view", "frames", "plane agrees", "nerve in one only", "CSA rel. diff median", "CSA error live / offline, median mm2")
    widths = (13, 6, 12, 17, 20, 36)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for view, s in sorted(stats.items()):
        frames_n = len(s["plane"])
        rel = statistics.median(s["rel"]) if s["rel"] else float("nan")
        errs = f"{statistics.median(s['live_err']):.3f} / {statistics.median(s['offline_err']):.3f}" if s["live_err"] else "n/a"
        print(f"{view:>13} {frames_n:6d} {statistics.mean(s['plane']):12.4f} {len(s['one']):17d} {rel:20.4f} {errs:>36}")


if __name__ == "__main__":
    main()
