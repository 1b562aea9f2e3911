"""`ultramn live SOURCE`: stream frames to the gateway's live stream and save each frame's result.

SOURCE is a clip file (anything ``ultramn analyze`` reads: video, DICOM cine, NPY/NPZ, TIFF,
GIF, ...) sent frame by frame at ``--fps`` (its own frame rate by default, 25 frames/s when
it has none; ``--fps 0``: as fast as the socket takes them), as a recorded scan replayed as
if live; or a V4L2 capture device (``/dev/videoN``: a capture card on Linux, read with
PyAV's ``v4l2`` input until Ctrl-C; not tried on hardware here). Each frame goes to
``WS /v1/live`` as a PNG; results are written to ``--out`` (CSV, the columns of
``GET /v1/analyses/{id}/frames.csv``: :mod:`ultramn.measure.frame_table`; a skipped frame is
a row with its number only) as they arrive, and the last line says how many frames were
sent, analysed and skipped, and the latency (frame sent -> its result). ``--record`` (with
``--patient``, ``--side``, ``--visit``) has the gateway store the stream as an analysis.

Exit codes: 0 done; 1 the gateway is unreachable, busy, or ends the stream on an error of
its own; 2 bad input (no such source, an undecodable file, an option, a key the gateway
refuses); 130 Ctrl-C (the results so far are in ``--out``).
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ultramn.commands.analyze import DEFAULT_GATEWAY


def _file_frames(source: Path) -> tuple[Iterator[Any], int, float | None]:
    """The frames of a clip file ``uint8 [H,W]``, their count and the file's frame rate."""
    from ultramn.data.decoders import DecodeError, decode
    from ultramn.errors import UserInputError

    try:
        clip = decode(source)
    except DecodeError as exc:
        raise UserInputError(str(exc)) from exc
    return iter(clip.frames), clip.n_frames, clip.fps


def _device_frames(device: str) -> Iterator[Any]:
    """Grey frames of a V4L2 capture device, read with PyAV until it stops."""
    import av

    from ultramn.errors import UserInputError

    try:
        container = av.open(device, format="v4l2")
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{device}: cannot open the capture device ({exc})") from exc

    def frames() -> Iterator[Any]:
        with container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="gray")

    return frames()


def _png(frame: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def register(app: typer.Typer) -> None:
    """Add ``ultramn live`` to ``app``."""

    @app.command("live")
    def live(
        source: Path = typer.Argument(..., help="Clip file to replay as if live, or a V4L2 capture device (/dev/videoN)."),
        gateway: str = typer.Option(DEFAULT_GATEWAY, "--gateway", envvar="ULTRAMN_GATEWAY", help="Gateway base URL."),
        api_key: str | None = typer.Option(None, "--api-key", envvar="ULTRAMN_API_KEY", help="X-API-Key for the gateway."),
        pixel_spacing: float | None = typer.Option(None, "--pixel-spacing", help="Pixel size in mm (CSA in mm²)."),
        fps: float | None = typer.Option(None, "--fps", help="Frames per second to send a file at (default: its own; 0: at once)."),
        out: Path | None = typer.Option(None, "--out", help="CSV of the frames' results (default: <source name>.live.csv)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress line."),
        record: bool = typer.Option(False, "--record", help="Also store the stream as an analysis on the gateway when it ends."),
        patient: str | None = typer.Option(None, "--patient", help="With --record: a pseudonym for the patient (follow-up)."),
        side: str | None = typer.Option(None, "--side", help="With --record: the side scanned, L or R."),
        visit: str | None = typer.Option(None, "--visit", help="With --record: the visit's date, YYYY-MM-DD."),
    ) -> None:
        """Stream SOURCE to the gateway's live stream (WS /v1/live) and save each frame's result."""
        from ultramn.commands.analyze import _follow_up_fields
        from ultramn.errors import UserInputError, check_http_url, out_path_problem
        from ultramn.measure.spacing import pixel_spacing_problem

        check_http_url(gateway, "--gateway")
        follow = _follow_up_fields(patient, side, visit)
        if follow and not record:
            raise UserInputError("--patient, --side and --visit go with --record (they are kept with the stored analysis)")
        if pixel_spacing is not None and (problem := pixel_spacing_problem(pixel_spacing)):
            raise UserInputError(f"--pixel-spacing {problem}")
        if fps is not None and not (fps >= 0 and fps < 1000):
            raise UserInputError(f"--fps must be 0 (at once) or a rate below 1000, got {fps:g}")
        device = str(source).startswith("/dev/video")
        path = source
        if not device and not path.is_file():
            raise UserInputError(f"{source} is not a file (a clip) or a capture device (/dev/videoN)")
        out = out or Path(path.name + ".live.csv")
        if (problem := out_path_problem(out, folder=False)) is not None:
            raise UserInputError(f"--out {out}: {problem}")
        if device:
            frames, total, rate = _device_frames(str(source)), None, None
        else:
            frames, total, rate = _file_frames(path)
        interval = 0.0 if fps == 0 or device else 1.0 / (fps or rate or 25.0)
        query = {"pixel_spacing_mm": str(pixel_spacing)} if pixel_spacing else {}
        if record:
            query.update({"record": "true", **follow})
            if rate or fps:
                query["fps"] = f"{fps or rate:g}"
        code = _stream(gateway, api_key, query, frames, total, rate, interval, out, quiet)
        if code:
            sys.exit(code)


def _stream(
    gateway: str,
    api_key: str | None,
    query: dict[str, str],
    frames: Iterator[Any],
    total: int | None,
    rate: float | None,
    interval: float,
    out: Path,
    quiet: bool,
) -> int:
    """Send the frames every ``interval`` s while a thread writes the answers to ``out``; the exit code."""
    from urllib.parse import urlencode

    from tqdm import tqdm
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    from ultramn.errors import UserInputError
    from ultramn.measure.frame_table import FrameTableWriter

    url = gateway.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/live"
    if query:
        url += "?" + urlencode(query)
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        ws = connect(url, additional_headers=headers, open_timeout=10, max_size=None)
    except InvalidStatus as exc:
        if exc.response.status_code == 403:
            raise UserInputError(f"the gateway refused the API key ({gateway})") from exc
        typer.echo(f"error: {gateway} has no live stream ({exc})", err=True)
        return 1
    except (OSError, TimeoutError, InvalidURI) as exc:
        typer.echo(f"error: cannot reach the gateway's live stream at {url} ({exc})", err=True)
        return 1
    stats: dict[str, Any] = {"results": 0, "skipped": 0, "latency": [], "end": None, "error": None}
    sent: dict[int, float] = {}
    bar = tqdm(total=total, unit="frame", desc="live", disable=quiet, dynamic_ncols=True)

    def receive(table: FrameTableWriter, fh: Any) -> None:
        try:
            while True:
                msg = json.loads(ws.recv())
                now = time.perf_counter()
                if msg["type"] == "frames":
                    rows = msg["frames"] + [{"index": i} for i in msg["skipped"]]
                    table.write({"fps": rate, "frames": sorted(rows, key=lambda f: f["index"])})
                    fh.flush()
                    stats["results"] += len(msg["frames"])
                    stats["skipped"] += len(msg["skipped"])
                    stats["latency"] += [(now - sent[f["index"]]) * 1000.0 for f in msg["frames"] if f["index"] in sent]
                elif msg["type"] == "error" and msg["code"] not in ("bad_frame", "bad_message"):
                    stats["error"] = f"{msg['code']}: {msg['message']}"
                elif msg["type"] == "end":
                    stats["end"] = msg
        except ConnectionClosed:
            return

    with open(out, "w", encoding="utf-8", newline="") as fh:
        receiver = threading.Thread(target=receive, args=(FrameTableWriter(fh), fh), daemon=True)
        try:
            first = json.loads(ws.recv(timeout=30))
            if first.get("type") != "ready":  # busy (its most streams run), or a bad --pixel-spacing
                typer.echo(f"error: the gateway did not open a live stream: {first.get('code')}: {first.get('message')}", err=True)
                return 2 if first.get("code") == "validation_error" else 1
            receiver.start()
            t0 = time.perf_counter()
            for index, frame in enumerate(frames):
                delay = t0 + index * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[index] = time.perf_counter()
                ws.send(_png(frame))
                bar.update(1)
            ws.send(json.dumps({"type": "end"}))
            receiver.join()
        except KeyboardInterrupt:
            ws.close()
            receiver.join(timeout=10)
            bar.close()
            typer.echo(f"interrupted: {_summary(len(sent), stats)}; results so far in {out}", err=True)
            return 130
        except ConnectionClosed:
            receiver.join(timeout=10)
        finally:
            bar.close()
            ws.close()
    if stats["error"]:
        typer.echo(f"error: the gateway ended the stream: {stats['error']}; {_summary(len(sent), stats)}", err=True)
        return 1
    stored = (stats["end"] or {}).get("analysis") or {}
    if stored.get("id"):
        typer.echo(f"recorded as analysis {stored['id']} ({stored['n_frames']} frames): {gateway.rstrip('/')}{stored['links']['self']}")
    elif stored.get("error"):
        typer.echo(f"warning: {stored['error']['message']}", err=True)
    typer.echo(f"{_summary(len(sent), stats)} -> {out}")
    return 0


def _summary(n_sent: int, stats: dict[str, Any]) -> str:
    latency = stats["latency"]
    median = f", latency median {statistics.median(latency):.0f} ms" if latency else ""
    return f"{n_sent} frames sent, {stats['results']} analysed, {stats['skipped']} skipped{median}"
