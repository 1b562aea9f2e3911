"""`ultramn analyze CLIP`: send a clip to the gateway, follow the job, save the results.

A small httpx client: checks that ``--gateway`` is an UltraMN gateway (``GET /health/live``),
uploads CLIP to ``POST /v1/analyses``, polls ``GET /v1/analyses/{id}`` with a progress bar
(windows done/total) and writes into ``--out``: ``result.json`` (the full analysis),
``frames.csv`` (its per-frame measurements, :mod:`ultramn.measure.frame_table`),
``masks.npz`` (as served), ``masks/frame_NNNN.png`` (one binary mask per frame, original
frame size) and, with ``--video``, ``overlay.mp4`` (``GET /v1/analyses/{id}/overlay.mp4``).
``--out`` is checked (and created) before anything is uploaded; the results are written to
a temporary folder inside it and then replace those of an earlier run there (its
``frame_NNNN.png`` masks included, and an ``overlay.mp4`` this run did not ask for; other
files are left alone).
Bad input (missing file, an invalid option, an ``--out`` that cannot hold the results, a 4xx
from the gateway) exits with code 2; an unreachable gateway, a URL that is not an UltraMN
gateway or a failed analysis with code 1; Ctrl-C with 130 (saying where an accepted
analysis can still be followed).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

DEFAULT_GATEWAY = "http://127.0.0.1:8080"

#: Files the command writes (and so may replace) in ``<out>``, besides the ``masks`` folder.
RESULT_FILES: tuple[str, ...] = ("result.json", "frames.csv", "masks.npz", "overlay.mp4")
#: Names of the mask PNGs the command writes (and so may replace) in ``<out>/masks``.
_FRAME_PNG = re.compile(r"frame_\d{4,}\.png")


def _error_text(resp: Any) -> str:
    try:
        err = resp.json()["error"]
        return f"{err['message']} ({err['code']}, HTTP {resp.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}: {resp.text[:200]}"


def _not_our_gateway(resp: Any) -> str | None:
    """Why the answer to ``GET /health/live`` is not an UltraMN gateway's, or ``None``."""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code} on /health/live"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "live":
        return 'HTTP 200 on /health/live, but not {"status": "live"}'
    return None


def _prepare_out(out: Path) -> tuple[Path, bool]:
    """Create ``out`` if needed and a staging folder inside it: ``(staging, created out)``.

    :class:`UserInputError` when ``out`` cannot hold the results (a file, an unwritable folder).
    """
    from ultramn.errors import UserInputError

    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is not a folder")
    for name, folder in (*((name, False) for name in RESULT_FILES), ("masks", True)):
        path = out / name
        if path.exists() and path.is_dir() != folder:
            raise UserInputError(f"--out {out}: {path} is {'not ' if folder else ''}a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".ultramn-", suffix=".partial", dir=out))
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc
    return staging, created


def _follow_up_fields(patient: str | None, side: str | None, visit: str | None) -> dict[str, str]:
    """The upload's ``patient``, ``side`` and ``visit`` fields, checked as the gateway checks
    them (:class:`UserInputError` naming the option, before anything is uploaded)."""
    from ultramn.errors import UserInputError
    from ultramn.measure.followup import parse_side, parse_visit, patient_problem

    fields: dict[str, str] = {}
    if patient is not None:
        if problem := patient_problem(patient):
            raise UserInputError(f"--patient {patient!r}: {problem}")
        fields["patient"] = patient
    for option, raw, parse in (("side", side, parse_side), ("visit", visit, lambda v: parse_visit(v).isoformat())):
        if raw is not None:
            try:
                fields[option] = parse(raw)
            except ValueError as exc:
                raise UserInputError(f"--{option} {exc}") from None
    return fields


def _install(staging: Path, out: Path) -> None:
    """Move the results written to ``staging`` into ``out``, replacing an earlier run's (an
    earlier ``overlay.mp4`` that this run did not fetch is removed: it showed other masks)."""
    (out / "result.json").unlink(missing_ok=True)  # no result.json while the files change
    masks = out / "masks"
    if masks.is_dir():
        for old in masks.iterdir():
            if _FRAME_PNG.fullmatch(old.name) and old.is_file():
                old.unlink()
        for new in sorted((staging / "masks").iterdir()):
            os.replace(new, masks / new.name)
    else:
        os.replace(staging / "masks", masks)
    os.replace(staging / "masks.npz", out / "masks.npz")
    os.replace(staging / "frames.csv", out / "frames.csv")
    if (staging / "overlay.mp4").is_file():
        os.replace(staging / "overlay.mp4", out / "overlay.mp4")
    else:
        (out / "overlay.mp4").unlink(missing_ok=True)
    os.replace(staging / "result.json", out / "result.json")


def register(app: typer.Typer) -> None:
    """Add ``ultramn analyze`` to ``app``."""

    @app.command("analyze")
    def analyze(
        clip: Path = typer.Argument(..., help="Clip file: MP4/AVI/MOV, DICOM, NPY/NPZ, TIFF, animated GIF, PNG/JPEG/BMP, ZIP of frames."),
        gateway: str = typer.Option(DEFAULT_GATEWAY, "--gateway", envvar="ULTRAMN_GATEWAY", help="Gateway base URL."),
        out: Path | None = typer.Option(
            None, "--out", help="Output folder (default: <clip name>.ultramn/); an earlier result there is replaced."
        ),
        api_key: str | None = typer.Option(None, "--api-key", envvar="ULTRAMN_API_KEY", help="X-API-Key for the gateway."),
        pixel_spacing: float | None = typer.Option(None, "--pixel-spacing", help="Pixel size in mm (overrides the file's)."),
        stride: int | None = typer.Option(None, "--stride", help="Frames between window starts."),
        timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the analysis."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        video: bool = typer.Option(False, "--video", help="Also save overlay.mp4: the clip with the nerve drawn on it."),
        patient: str | None = typer.Option(
            None, "--patient", help="A pseudonym for the patient (not a name), for the follow-up across visits."
        ),
        side: str | None = typer.Option(None, "--side", help="The side scanned: L or R."),
        visit: str | None = typer.Option(None, "--visit", help="The visit's date, YYYY-MM-DD (default: today, with --patient)."),
    ) -> None:
        """Analyse CLIP with a running gateway and save result.json, frames.csv, masks.npz and mask PNGs
        (and overlay.mp4 with --video)."""
        import httpx
        import numpy as np
        from PIL import Image
        from tqdm import tqdm

        from ultramn.errors import UserInputError, check_http_url, check_stride
        from ultramn.measure.frame_table import frame_table_csv
        from ultramn.measure.spacing import pixel_spacing_problem

        if clip.is_dir():
            raise UserInputError(f"{clip} is a folder; analyze takes one clip file (for a folder of clips: ultramn batch {clip} --out DIR)")
        if not clip.is_file():
            raise UserInputError(f"{clip} does not exist or is not a file")
        check_http_url(gateway, "--gateway")
        if pixel_spacing is not None and (problem := pixel_spacing_problem(pixel_spacing)):
            raise UserInputError(f"--pixel-spacing {problem}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise UserInputError(f"--timeout must be a positive number of seconds, got {timeout:g}")
        check_stride(stride)
        out = out or clip.with_name(clip.name + ".ultramn")
        base = gateway.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        fields: dict[str, str] = {}
        if pixel_spacing is not None:
            fields["pixel_spacing_mm"] = str(pixel_spacing)
        if stride is not None:
            fields["stride"] = str(stride)
        fields.update(_follow_up_fields(patient, side, visit))

        bar: Any = None  # the progress bar, closed before a message so that it gets a line of its own

        def fail(message: str, code: int = 1) -> None:
            if bar is not None:
                bar.close()
            if code == 2:
                raise UserInputError(message)
            typer.echo(f"error: {message}", err=True)
            sys.exit(code)  # typer.Exit would be swallowed by the CLI's standalone_mode=False

        staging, created_out = _prepare_out(out)  # before any upload: a bad --out must not cost an analysis
        job_id: str | None = None
        uploading = False
        finished = False
        try:
            try:
                with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:
                    live = client.get("/health/live")
                    if problem := _not_our_gateway(live):
                        fail(f"{gateway} is not an UltraMN gateway ({problem})")
                    uploading = True
                    with open(clip, "rb") as fh:
                        resp = client.post("/v1/analyses", files={"file": (clip.name, fh)}, data=fields)
                    uploading = False
                    if 400 <= resp.status_code < 500 and resp.status_code != 429:
                        fail(f"the gateway refused {clip.name}: {_error_text(resp)}", 2)
                    if resp.status_code not in (200, 202):
                        fail(f"the gateway could not take the clip: {_error_text(resp)}")
                    job: dict[str, Any] = resp.json()
                    job_id = str(job["id"])
                    bar = tqdm(total=job["progress"].get("windows_total") or 1, unit="win", disable=quiet, desc="analysing")
                    deadline = time.monotonic() + timeout
                    while job["status"] not in ("succeeded", "failed"):
                        if time.monotonic() > deadline:
                            fail(
                                f"analysis {job_id} not finished after {timeout:g} s "
                                f"(it continues on the gateway: GET {base}/v1/analyses/{job_id})"
                            )
                        time.sleep(0.25)
                        r = client.get(f"/v1/analyses/{job_id}")
                        if r.status_code != 200:
                            fail(f"lost analysis {job_id}: {_error_text(r)}")
                        job = r.json()
                        prog = job["progress"]
                        if prog.get("windows_total"):
                            bar.total = prog["windows_total"]
                        bar.n = prog.get("windows_done") or 0
                        bar.refresh()
                    bar.close()
                    finished = True
                    if job["status"] == "failed":
                        err = job.get("error") or {}
                        fail(f"analysis {job_id} failed: {err.get('message', 'unknown error')} ({err.get('code')})")
                    npz = client.get(f"/v1/analyses/{job_id}/masks.npz")
                    if npz.status_code != 200:
                        fail(f"could not download the masks: {_error_text(npz)}")
                    if video:
                        if not quiet:
                            typer.echo("making the overlay video ...", err=True)
                        mp4 = client.get(f"/v1/analyses/{job_id}/overlay.mp4", timeout=max(60.0, timeout))
                        if mp4.status_code != 200:
                            fail(f"could not download the overlay video: {_error_text(mp4)}")
                        (staging / "overlay.mp4").write_bytes(mp4.content)
            except httpx.HTTPError as exc:
                fail(f"cannot reach the gateway at {gateway}: {exc}")
                return

            (staging / "result.json").write_text(json.dumps(job, indent=2))
            (staging / "frames.csv").write_text(frame_table_csv(job.get("result") or {}), encoding="utf-8")
            (staging / "masks.npz").write_bytes(npz.content)
            with np.load(io.BytesIO(npz.content)) as data:
                masks = np.asarray(data["masks"])
            (staging / "masks").mkdir()
            for i, mask in enumerate(masks):
                Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(staging / "masks" / f"frame_{i:04d}.png")
            _install(staging, out)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            if job_id is not None:
                state = "is kept" if finished else "continues"
                typer.echo(f"interrupted; the analysis {job_id} {state} on the gateway (GET {base}/v1/analyses/{job_id})", err=True)
                sys.exit(130)
            if uploading:
                typer.echo(f"interrupted during the upload; the gateway may have accepted it (GET {base}/v1/analyses)", err=True)
                sys.exit(130)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created_out:
                with contextlib.suppress(OSError):
                    out.rmdir()  # only when empty: nothing was written
        res = job.get("result") or {}
        typer.echo(
            f"{job_id}: plane {res.get('plane')} ({(res.get('plane_confidence') or 0):.2f}), "
            f"{res.get('n_frames')} frames, nerve in {100 * (res.get('nerve_fraction') or 0):.0f}% -> {out}"
        )
