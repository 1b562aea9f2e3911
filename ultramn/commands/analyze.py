"""`ultramn analyze CLIP`: send a clip to the gateway, follow the job, save the results.

A small httpx client: uploads CLIP to ``POST /v1/analyses``, polls
``GET /v1/analyses/{id}`` with a progress bar (windows done/total) and writes into
``--out``: ``result.json`` (the full analysis), ``masks.npz`` (as served) and
``masks/frame_NNNN.png`` (one binary mask per frame, original frame size).
Bad input (missing file, a 4xx from the gateway) exits with code 2; an unreachable
gateway or a failed analysis with code 1.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def _error_text(resp: Any) -> str:
    try:
        err = resp.json()["error"]
        return f"{err['message']} ({err['code']}, HTTP {resp.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}: {resp.text[:200]}"


def register(app: typer.Typer) -> None:
    """Add ``ultramn analyze`` to ``app``."""

    @app.command("analyze")
    def analyze(
        clip: Path = typer.Argument(..., help="Clip file: MP4/AVI/MOV, DICOM, NPY/NPZ, TIFF, PNG/JPEG/BMP, ZIP of frames."),
        gateway: str = typer.Option(DEFAULT_GATEWAY, "--gateway", envvar="ULTRAMN_GATEWAY", help="Gateway base URL."),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default: <clip name>.ultramn/)."),
        api_key: str | None = typer.Option(None, "--api-key", envvar="ULTRAMN_API_KEY", help="X-API-Key for the gateway."),
        pixel_spacing: float | None = typer.Option(None, "--pixel-spacing", help="Pixel size in mm (overrides the file's)."),
        stride: int | None = typer.Option(None, "--stride", help="Frames between window starts."),
        timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the analysis."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Analyse CLIP with a running gateway and save result.json, masks.npz and mask PNGs."""
        import httpx
        import numpy as np
        from PIL import Image
        from tqdm import tqdm

        from ultramn.errors import UserInputError, check_http_url
        from ultramn.measure.spacing import pixel_spacing_problem

        if not clip.is_file():
            raise UserInputError(f"{clip} does not exist or is not a file")
        check_http_url(gateway, "--gateway")
        if pixel_spacing is not None and (problem := pixel_spacing_problem(pixel_spacing)):
            raise UserInputError(f"--pixel-spacing {problem}")
        out = out or clip.with_name(clip.name + ".ultramn")
        headers = {"X-API-Key": api_key} if api_key else {}
        fields: dict[str, str] = {}
        if pixel_spacing is not None:
            fields["pixel_spacing_mm"] = str(pixel_spacing)
        if stride is not None:
            fields["stride"] = str(stride)

        def fail(message: str, code: int = 1) -> None:
            if code == 2:
                raise UserInputError(message)
            typer.echo(f"error: {message}", err=True)
            sys.exit(code)  # typer.Exit would be swallowed by the CLI's standalone_mode=False

        try:
            with httpx.Client(base_url=gateway.rstrip("/"), headers=headers, timeout=60.0) as client:
                with open(clip, "rb") as fh:
                    resp = client.post("/v1/analyses", files={"file": (clip.name, fh)}, data=fields)
                if 400 <= resp.status_code < 500 and resp.status_code != 429:
                    fail(f"the gateway refused {clip.name}: {_error_text(resp)}", 2)
                if resp.status_code not in (200, 202):
                    fail(f"the gateway could not take the clip: {_error_text(resp)}")
                job: dict[str, Any] = resp.json()
                job_id = job["id"]
                bar = tqdm(total=job["progress"].get("windows_total") or 1, unit="win", disable=quiet, desc="analysing")
                deadline = time.monotonic() + timeout
                while job["status"] not in ("succeeded", "failed"):
                    if time.monotonic() > deadline:
                        fail(f"analysis {job_id} not finished after {timeout:.0f} s (it continues on the gateway)")
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
                if job["status"] == "failed":
                    err = job.get("error") or {}
                    fail(f"analysis {job_id} failed: {err.get('message', 'unknown error')} ({err.get('code')})")
                npz = client.get(f"/v1/analyses/{job_id}/masks.npz")
                if npz.status_code != 200:
                    fail(f"could not download the masks: {_error_text(npz)}")
        except httpx.HTTPError as exc:
            fail(f"cannot reach the gateway at {gateway}: {exc}")
            return

        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(job, indent=2))
        (out / "masks.npz").write_bytes(npz.content)
        with np.load(io.BytesIO(npz.content)) as data:
            masks = np.asarray(data["masks"])
        (out / "masks").mkdir(exist_ok=True)
        for i, mask in enumerate(masks):
            Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(out / "masks" / f"frame_{i:04d}.png")
        res = job.get("result") or {}
        typer.echo(
            f"{job_id}: plane {res.get('plane')} ({(res.get('plane_confidence') or 0):.2f}), "
            f"{res.get('n_frames')} frames, nerve in {100 * (res.get('nerve_fraction') or 0):.0f}% -> {out}"
        )
