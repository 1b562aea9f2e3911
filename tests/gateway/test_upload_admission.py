"""Upload admission: a bounded number of bodies in flight (429 ``uploads_busy`` beyond), and
507 before a body the disk cannot hold is read. The real gateway on the real Triton."""

from __future__ import annotations

import asyncio
import io
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import gateway.core.uploads as uploads_module
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload, write_clip
from ultramn.batch.gateway_client import GatewayAnalyzer
from ultramn.batch.types import ClipError
from ultramn.serving.embedded import EmbeddedTriton

pytestmark = pytest.mark.anyio

BOUNDARY = "b0undary"


def multipart(name: str, data: bytes) -> tuple[bytes, bytes]:
    """The head and tail of a one-file multipart body."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


async def test_uploads_past_the_limit_get_429_until_a_slot_frees(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, upload_concurrency=1, retry_after_s=1)
    path = write_clip("npy", clip.frames, tmp_path / "files")
    body = path.read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("exam/a.npy", body)
        zf.writestr("exam/notes.txt", "not a clip")  # with a non-.npy member it is an archive, not an NPZ
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:  # a client sending its body slowly
        head, tail = multipart("clip.npy", body)
        yield head + body[:1000]
        await gate.wait()
        yield body[1000:] + tail

    async with running_gateway(settings) as client:
        slots = client.app.state.ultramn.uploads  # type: ignore[attr-defined]
        first = asyncio.create_task(
            client.post("/v1/analyses", content=slow(), headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
        )
        for _ in range(500):
            if slots.in_use:
                break
            await asyncio.sleep(0.01)
        assert slots.in_use == 1
        busy = await upload(client, path)
        assert_error(busy, 429, "uploads_busy")
        assert int(busy.headers["retry-after"]) == settings.retry_after_s
        batch = await client.post("/v1/batches", files={"file": ("clips.zip", archive.getvalue())})
        assert_error(batch, 429, "uploads_busy")  # one limit for single clips and archives
        analyzer = GatewayAnalyzer("http://gateway", transport=httpx.ASGITransport(app=client.app), max_queue_retries=1)  # type: ignore[attr-defined]
        with pytest.raises(ClipError) as refused:  # `ultramn batch` retries, then records the gateway's own code
            await analyzer.analyze(path, "clip.npy")
        await analyzer.aclose()
        assert refused.value.code == "uploads_busy" and "stayed busy after 2 tries" in refused.value.message
        gate.set()
        assert (await first).status_code == 202
        assert slots.in_use == 0
        assert (await upload(client, path)).status_code == 202  # the slot is free again
        assert_error(await upload(client, content=b"not a clip", name="x.npy"), 415, "unsupported_media_type")
        again = await client.post("/v1/batches", files={"file": ("clips.zip", archive.getvalue())})
        assert again.status_code == 202, again.text
        assert slots.in_use == 0  # a refused upload gives its slot back too


async def test_an_upload_the_disk_cannot_hold_gets_507_before_it_is_read(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url)
    path = write_clip("npy", clip.frames, tmp_path / "files")
    real = shutil.disk_usage

    def nearly_full(folder: str | Path) -> object:  # an injected fault: 10 MB left on every disk
        usage = real(folder)
        return type(usage)(usage.total, usage.total - 10 * 1024**2, 10 * 1024**2)

    async with running_gateway(settings) as client:
        monkeypatch.setattr(uploads_module.shutil, "disk_usage", nearly_full)
        r = await upload(client, path)
        assert_error(r, 507, "insufficient_storage")
        assert "retry-after" in r.headers
        assert not any((tmp_path / "data" / "uploads").iterdir())  # nothing stored
        monkeypatch.setattr(uploads_module.shutil, "disk_usage", real)
        assert (await upload(client, path)).status_code == 202
