"""``WS /v1/live``: a live stream of frames in, each frame's plane and nerve out (:mod:`gateway.live`).

Protocol (JSON text messages from the server; docs/api.md, "Live stream"):

- the client sends each frame as one binary message (a PNG, JPEG or BMP image), and may end
  with the text message ``{"type": "end"}`` (or just close);
- the server answers ``{"type": "ready", ...}`` once, then ``{"type": "frames", ...}`` for
  every analysis (each pending frame's result, and the indices it had to skip), ``{"type":
  "error", "code", "message"}`` for a message it cannot use (the stream goes on), and
  ``{"type": "end", "frames", "skipped"}`` before it closes.

The API key (when ``ULTRAMN_API_KEY`` is set) is the ``X-API-Key`` header or, for browsers
(which cannot set WebSocket headers), the ``key`` query parameter. ``record=true`` stores the
stream as an analysis when it ends (:func:`gateway.api.routes.analyses.store_recorded_clip`).
Closing codes: 1000 at the end, 1008 for a missing or wrong key or a bad query parameter,
1013 when ``ULTRAMN_LIVE_MAX_STREAMS`` streams run already or Triton is unavailable (try
again later), 1009 for a message over ``ULTRAMN_LIVE_MAX_FRAME_BYTES``, 1001 after
``ULTRAMN_LIVE_IDLE_TIMEOUT_S`` without a message, 1011 for a fault of the gateway's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from gateway.api.deps import get_state
from gateway.api.routes.analyses import (
    FollowUpFields,
    _parse_bool,
    _parse_float,
    _parse_follow_up,
    _parse_spacing,
    store_recorded_clip,
)
from gateway.api.schemas import links
from gateway.core.errors import ApiError
from gateway.core.metrics import Metrics
from gateway.live import FrameError, LiveSession, LiveStreams, decode_frame, live_pipeline
from gateway.triton_client import TritonUnavailableError
from gateway.worker import QueueFullError
from ultramn.contract import PLANES

log = logging.getLogger("gateway.live")
router = APIRouter(prefix="/v1", tags=["live"])


def _streams(ws: WebSocket, limit: int, metrics: Metrics) -> LiveStreams:
    """The app's :class:`LiveStreams` (made on the first stream; ``ultramn_live_streams`` reads it)."""
    streams = getattr(ws.app.state, "ultramn_live", None)
    if streams is None:
        streams = ws.app.state.ultramn_live = LiveStreams(limit)
        metrics.live_streams.set_function(lambda: streams.active)
    return streams


def _key_ok(ws: WebSocket, expected: str | None) -> bool:
    if not expected:
        return True
    given = ws.headers.get("x-api-key") or ws.query_params.get("key") or ""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


async def _close(ws: WebSocket, code: int, message: dict[str, Any] | None = None) -> None:
    if ws.client_state == WebSocketState.CONNECTED:
        if message is not None:
            await ws.send_json(message)
        await ws.close(code)


@router.websocket("/live")
async def live_stream(ws: WebSocket) -> None:
    """See the module docstring."""
    try:
        state = get_state(ws)  # type: ignore[arg-type]
    except ApiError:  # the lifespan has not started (or has ended)
        await ws.close(1013, "the service is starting or stopping; retry")
        return
    settings = state.settings
    if not _key_ok(ws, settings.api_key):
        await ws.close(1008, "missing or invalid API key (X-API-Key header or key query parameter)")
        return
    unknown = sorted(set(ws.query_params) - QUERY_PARAMETERS)
    await ws.accept()
    if unknown:
        await _close(ws, 1008, {"type": "error", "code": "validation_error", "message": f"unknown query parameter(s) {unknown}"})
        return
    try:
        spacing = _parse_spacing(ws.query_params.get("pixel_spacing_mm"))
        fps = _fps(ws.query_params.get("fps"))
        record = _parse_bool("record", ws.query_params.get("record"))
        follow = _parse_follow_up(ws.query_params)
    except ApiError as exc:
        await _close(ws, 1008, {"type": "error", "code": "validation_error", "message": exc.message})
        return
    streams = _streams(ws, settings.live_max_streams, state.metrics)
    if not streams.try_open():
        await _close(ws, 1013, {"type": "error", "code": "busy", "message": f"{streams.limit} live streams run already; retry later"})
        return
    pipeline = live_pipeline(state.jobs.pipeline.config, state.triton)
    session = LiveSession(pipeline, pixel_spacing_mm=spacing, fps=fps, record=record, limits=settings.decode_limits)
    try:
        last = await _serve(ws, session, settings.live_idle_timeout_s, settings, state.metrics)
    finally:
        streams.close()  # before the last message: a client that connects again on it finds the slot free
    stored = await _store_recording(session, follow, state)  # also when the client went away: accepted work is kept
    if last is not None:
        if last[1].get("type") == "end" and stored is not None:
            last[1]["analysis"] = stored
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await _close(ws, *last)


#: Query parameters of ``/v1/live``.
QUERY_PARAMETERS = frozenset({"key", "pixel_spacing_mm", "fps", "record", "patient", "side", "visit"})


def _fps(raw: str | None) -> float | None:
    """The ``fps`` query parameter (the recording's frame rate): a positive number up to 1000."""
    value = _parse_float("fps", raw)
    if value is not None and value > 1000:
        raise ApiError(422, "validation_error", "fps: must be a frame rate up to 1000")
    return value


async def _store_recording(session: LiveSession, follow: FollowUpFields, state: Any) -> dict[str, Any] | None:
    """Store the recorded frames as an analysis (queued like an upload); what the end message
    says of it, or ``None`` when nothing was recorded."""
    clip = session.recording()
    if clip is None:
        return None
    try:
        row = await asyncio.to_thread(store_recorded_clip, clip, follow, state.repo, state.files, state.jobs, state.settings)
    except QueueFullError as exc:
        return {"error": {"code": "queue_full", "message": f"the recording was not stored: {exc}"}}
    except OSError as exc:
        log.error("storing a live recording failed", extra={"error": str(exc)})
        return {"error": {"code": "storage_error", "message": "the recording was not stored: the server cannot write it"}}
    note = {"recording_full": True} if session.recording_full else {}
    return {"id": row.id, "n_frames": clip.n_frames, "fps": clip.fps, "links": links(row.id), **note}


#: The close code and the last message of a stream that ended while the client still listens.
Last = tuple[int, dict[str, Any]]


async def _serve(ws: WebSocket, session: LiveSession, idle_s: float, settings: Any, metrics: Metrics) -> Last | None:
    """Receive frames and analyse them concurrently until the end, a disconnect or an error;
    the code and message to close with (``None``: closed already, or the client is gone)."""
    await ws.send_json(
        {"type": "ready", "window_frames": session.window, "planes": list(PLANES), "pixel_spacing_mm": session.pixel_spacing_mm}
    )
    wake = asyncio.Event()
    done = asyncio.Event()  # the client ended: report what is pending, then stop
    gone = asyncio.Event()  # the client went away: nobody reads the rest, stop now

    async def receive() -> None:
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=idle_s)
                except TimeoutError:
                    await _close(ws, 1001, {"type": "end", "reason": f"no message for {idle_s:g} s", **_counts(session)})
                    return
                if message["type"] == "websocket.disconnect":
                    gone.set()
                    return
                data, text = message.get("bytes"), message.get("text")
                if data is not None:
                    if len(data) > settings.live_max_frame_bytes:
                        limit = settings.live_max_frame_bytes
                        await _close(ws, 1009, {"type": "error", "code": "too_large", "message": f"a frame over {limit} bytes"})
                        return
                    try:
                        frame = await asyncio.to_thread(decode_frame, data, settings.decode_limits)
                        session.add(frame)
                    except FrameError as exc:
                        await ws.send_json({"type": "error", "code": "bad_frame", "index": session.received, "message": str(exc)})
                        continue
                    wake.set()
                elif text is not None:
                    try:
                        kind = json.loads(text).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == "end":
                        return
                    await ws.send_json({"type": "error", "code": "bad_message", "message": 'text messages: {"type": "end"} only'})
        finally:
            done.set()
            wake.set()

    async def analyse() -> Last | None:
        while True:
            if gone.is_set():
                return None
            if not session.pending:
                if done.is_set():
                    return 1000, {"type": "end", **_counts(session)}
                await wake.wait()
                wake.clear()
                continue
            try:
                answer = await session.analyse()  # frames that come in meanwhile are pending for the next one
            except TritonUnavailableError as exc:
                return 1013, {"type": "error", "code": "triton_unavailable", "message": str(exc)}
            metrics.observe_live(len(answer["frames"]), len(answer["skipped"]), answer["analysis_ms"] / 1000.0)
            if ws.client_state != WebSocketState.CONNECTED:
                return None
            await ws.send_json(answer)

    receiver = asyncio.create_task(receive())
    try:
        return await analyse()
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # the client went away mid-send
        log.info("live stream closed by the client", extra={"error": str(exc)})
        return None
    except Exception as exc:  # a fault of ours: this stream ends, the gateway goes on
        log.exception("live stream failed", extra={"error": str(exc)})
        return 1011, {"type": "error", "code": "internal_error", "message": "the live analysis failed (gateway log)"}
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiver


def _counts(session: LiveSession) -> dict[str, int]:
    return {"frames": session.received, "skipped": session.skipped}
