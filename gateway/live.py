"""Live stream: frames in as they are scanned, each frame's plane and nerve out (``/v1/live``).

One :class:`LiveSession` per WebSocket. Frames (PNG/JPEG/BMP, one per message) join a
history of the model's window length ``T``. Whenever new frames have arrived and the last
analysis is done, the whole pipeline (``roi -> preprocess -> windows -> inference -> stitch
-> postprocess``, the gateway's own stages and settings) runs on the history as one clip of
at most ``T`` frames, and the frames not reported yet get their results: the newest frames,
at the end of the window (they see the frames before them, not after: a live result cannot
wait for the future). So the latency is about one analysis (80-90 ms for a window on 2 CPU
cores, docs/benchmarks.md, "Live stream"), and the work is bounded whatever the frame rate: frames that
arrive faster than windows are analysed are reported together, and frames that fell out of
the history before their turn (more than ``T`` behind) are reported as skipped, never queued
without end. :class:`LiveStreams` bounds the sessions at once (``ULTRAMN_LIVE_MAX_STREAMS``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.pipeline import ClipContext, Pipeline, PipelineConfig, build_pipeline
from gateway.triton_client import TritonClient
from ultramn.contract import CONTRACT
from ultramn.data.decoders import DEFAULT_LIMITS, DecodedClip, DecodeLimits, decode

U8 = npt.NDArray[np.uint8]

#: The per-frame fields a live result carries (those of a clip result's ``frames[]``).
FRAME_FIELDS: tuple[str, ...] = (
    "plane",
    "plane_probs",
    "confidence",
    "nerve_present",
    "csa_px",
    "csa_mm2",
    "centroid",
    "centroid_mm",
    "bbox",
    "perimeter_px",
    "perimeter_mm",
    "circularity",
    "flattening_ratio",
    "at_side",
    "contour",
)


def live_pipeline(config: PipelineConfig, triton: TritonClient) -> Pipeline:
    """The gateway's pipeline (``config``: its stages' settings) without the tissue track,
    which serves a clip's excursion, not a frame's result (``PostprocessConfig.track_tissue``)."""
    return build_pipeline(dataclasses.replace(config, postprocess=dataclasses.replace(config.postprocess, track_tissue=False)), triton)


class FrameError(ValueError):
    """A message that is not one usable frame of this stream (the stream goes on without it)."""


def decode_frame(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> U8:
    """One grey frame ``uint8 [H,W]`` from an image's bytes (PNG, JPEG, BMP; colour -> grey)."""
    try:
        clip = decode(data, "frame", limits)
    except (ValueError, OSError) as exc:
        raise FrameError(str(exc)) from exc
    if clip.format not in ("png", "jpeg", "bmp") or clip.n_frames != 1:
        raise FrameError(f"a live frame is one PNG, JPEG or BMP image, not {clip.format} with {clip.n_frames} frames")
    return clip.frames[0]


@dataclass
class LiveSession:
    """The history and the bookkeeping of one stream (see the module docstring).

    ``received``: frames added (the next frame's index); ``reported``: frames whose result
    (or skip) was sent.
    """

    pipeline: Pipeline
    pixel_spacing_mm: float | None = None
    window: int = CONTRACT.window_frames
    fps: float | None = None
    #: keep every frame (up to ``limits``) to store the stream as an analysis at its end
    record: bool = False
    limits: DecodeLimits = DEFAULT_LIMITS
    history: deque[U8] = field(init=False)
    received: int = 0
    reported: int = 0
    skipped: int = 0
    size: tuple[int, int] | None = None
    recorded: list[U8] = field(default_factory=list)
    #: the recording reached the limits: later frames are analysed live but not kept
    recording_full: bool = False
    arrivals: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.window)

    def add(self, frame: U8) -> int:
        """Append ``frame`` ``uint8 [H,W]``; its index. Every frame of a stream has the first one's size."""
        shape = (int(frame.shape[0]), int(frame.shape[1]))
        if self.size is None:
            self.size = shape
        elif shape != self.size:
            raise FrameError(f"frame {self.received} is {shape[1]}x{shape[0]}; this stream's frames are {self.size[1]}x{self.size[0]}")
        self.history.append(frame)
        if self.record and not self.recording_full:
            n = len(self.recorded) + 1
            if n > self.limits.max_frames or n * shape[0] * shape[1] > self.limits.max_pixels:
                self.recording_full = True
            else:
                self.recorded.append(frame)
                self.arrivals.append(time.monotonic())
        self.received += 1
        return self.received - 1

    def recording(self) -> DecodedClip | None:
        """The recorded frames as a clip (``None`` when nothing was recorded); its frame rate is
        ``fps`` when given, else the median rate the frames arrived at."""
        if not self.recorded:
            return None
        fps = self.fps
        if fps is None and len(self.arrivals) > 1:
            median = float(np.median(np.diff(np.asarray(self.arrivals))))
            fps = round(1.0 / median, 2) if median > 0 else None
        return self._clip(self.recorded, fps)

    def _clip(self, frames: list[U8], fps: float | None) -> DecodedClip:
        """``frames`` as a clip of this stream (its pixel spacing, isotropic)."""
        spacing = (self.pixel_spacing_mm, self.pixel_spacing_mm) if self.pixel_spacing_mm else None
        return DecodedClip(
            frames=np.stack(frames), fps=fps, pixel_spacing_mm=self.pixel_spacing_mm, pixel_spacing_xy_mm=spacing, format="live"
        )

    @property
    def pending(self) -> int:
        """Frames received and not reported yet."""
        return self.received - self.reported

    async def analyse(self) -> dict[str, Any]:
        """Analyse the history and report the pending frames: ``{"type": "frames", "frames":
        [...], "skipped": [indices], "window": [first, last], "analysis_ms", "timings_ms"}``
        (``timings_ms``: the pipeline's stages, as a clip result's). Each frame is
        :data:`FRAME_FIELDS` of the clip result's frame, with its ``index`` in the stream."""
        pending = self.pending
        end = self.received  # frames added while the analysis runs wait for the next one
        clip = self._clip(list(self.history), self.fps)
        first = end - clip.n_frames
        t0 = time.perf_counter()
        ctx = ClipContext(job_id=f"live-{id(self)}-{end}", clip=clip, pixel_spacing_mm=self.pixel_spacing_mm)
        await self.pipeline.run(ctx)
        result = ctx.result or {}
        skipped = list(range(end - pending, first)) if end - pending < first else []
        out = []
        for position, frame in enumerate(result.get("frames") or []):
            index = first + position
            if index >= end - pending:
                out.append({"index": index, **{k: frame.get(k) for k in FRAME_FIELDS}})
        self.reported = end
        self.skipped += len(skipped)
        return {
            "type": "frames",
            "frames": out,
            "skipped": skipped,
            "window": [first, end - 1],
            "analysis_ms": round((time.perf_counter() - t0) * 1000.0, 1),
            "timings_ms": {stage: round(ms, 1) for stage, ms in ctx.timings.items()},
        }


class LiveStreams:
    """How many live sessions run at once, up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_open(self) -> bool:
        """Count one more session; ``False`` (nothing counted) at the limit."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def close(self) -> None:
        """Count one session less."""
        self.active = max(0, self.active - 1)
