"""Helpers of the gateway tests: settings, a running app + client, clip files of every format."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from gateway.core.config import Settings
from gateway.main import create_app
from tests.data.test_decoders import write_dicom_cine, write_video

FPS = 25


def make_settings(data_dir: Path, triton_url: str, **overrides: Any) -> Settings:
    """Settings for a test app: its own data folder, fast retries."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "triton_url": triton_url,
        "retry_initial_s": 0.2,
        "retry_max_s": 1.0,
        "wait_timeout_s": 60.0,
        "triton_check_timeout_s": 1.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its lifespan running, behind an httpx client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=120) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def write_clip(fmt: str, frames: np.ndarray, folder: Path, spacing_mm: float | None = None) -> Path:
    """Write ``uint8 [N,H,W]`` frames as a real ``fmt`` file; the path."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "mp4":
        return write_video(folder / "clip.mp4", frames, "libx264", fps=FPS, colour=False)
    if fmt == "avi":
        return write_video(folder / "clip.avi", frames, "mpeg4", fps=FPS, colour=True)
    if fmt == "dicom":
        cm = (spacing_mm or 0.2) / 10.0
        return write_dicom_cine(folder / "clip.dcm", frames, region_cm=(cm, cm), cine_rate=float(FPS))
    if fmt == "npy":
        np.save(folder / "clip.npy", frames)
        return folder / "clip.npy"
    if fmt == "npz":
        np.savez_compressed(folder / "clip.npz", frames=frames, fps=np.float32(FPS))
        return folder / "clip.npz"
    if fmt == "tiff":
        pages = [Image.fromarray(f) for f in frames]
        pages[0].save(folder / "clip.tiff", save_all=True, append_images=pages[1:])
        return folder / "clip.tiff"
    if fmt == "gif":
        pages = [Image.fromarray(f) for f in frames]
        pages[0].save(folder / "loop.gif", save_all=True, append_images=pages[1:], duration=1000 // FPS, loop=0)
        return folder / "loop.gif"
    if fmt == "png":
        Image.fromarray(frames[0]).save(folder / "still.png")
        return folder / "still.png"
    if fmt == "zip":
        path = folder / "frames.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for i, f in enumerate(frames):
                buf = io.BytesIO()
                Image.fromarray(f).save(buf, format="PNG")
                zf.writestr(f"frame_{i}.png", buf.getvalue())
        return path
    raise ValueError(fmt)


async def upload(
    client: httpx.AsyncClient,
    path: Path | None = None,
    *,
    content: bytes | None = None,
    name: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    """``POST /v1/analyses`` with ``path`` (or ``content`` named ``name``) and form ``fields``."""
    data = path.read_bytes() if path is not None else content
    assert data is not None
    filename = name or (path.name if path is not None else "upload.bin")
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    return await client.post("/v1/analyses", files={"file": (filename, data)}, data=form, headers=headers or {})


async def wait_done(client: httpx.AsyncClient, job_id: str, timeout: float = 90.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll until the job succeeded or failed; its detail."""
    import anyio

    with anyio.fail_after(timeout):
        while True:
            r = await client.get(f"/v1/analyses/{job_id}", headers=headers or {})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] in ("succeeded", "failed"):
                return body
            await anyio.sleep(0.1)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """``r`` is a JSON error of ``status`` (and ``code``)."""
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert set(body) >= {"error"} and {"code", "message"} <= set(body["error"]), body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body
