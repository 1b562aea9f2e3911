"""Bad input gets a clear JSON error and never takes the service down."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from tests.data.test_decoders import _base_dicom
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload, write_clip
from ultramn.serving.embedded import EmbeddedTriton

pytestmark = pytest.mark.anyio


def _png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _dicom_without_pixels(frames: np.ndarray, path: Path) -> bytes:
    ds: Dataset = _base_dicom(frames)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


async def test_bad_files(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    mp4 = write_clip("mp4", clip.frames, files_dir).read_bytes()
    cases: list[tuple[bytes, str, int, str]] = [
        (b"just some text, not a clip\n" * 20, "notes.txt", 415, "unsupported_media_type"),
        (_png(64, 64), "clip.mp4", 415, "unsupported_media_type"),  # lying type
        (mp4[: len(mp4) // 3], "clip.mp4", 422, "corrupt_file"),  # truncated
        (_dicom_without_pixels(clip.frames[:2], files_dir / "nopix.dcm"), "scan.dcm", 422, "corrupt_file"),
        (_npy(np.zeros((0, 64, 64), np.uint8)), "empty.npy", 422, "corrupt_file"),  # zero frames
        (_png(10, 5000), "wide.png", 422, "limit_exceeded"),  # absurd dimensions
        (b"", "empty.mp4", 422, "corrupt_file"),
        (_npy(np.full((2, 64, 64), np.nan, np.float32)), "void.npy", 422, "corrupt_file"),  # no finite pixel
    ]
    for content, name, status, code in cases:
        body = assert_error(await upload(gateway, content=content, name=name, wait=True), status, code)
        assert "uploads" not in body["error"]["message"] and ".part" not in body["error"]["message"]  # no server paths
        assert "upload." not in body["error"]["message"], body  # the uploader's file name, never the gateway's "upload.mp4"
        if name == "notes.txt":
            assert body["error"]["message"].startswith("notes.txt: unrecognised content"), body
    # the service is still fine and nothing was queued
    assert (await gateway.get("/health/ready")).status_code == 200
    assert (await gateway.get("/v1/analyses", params={"status": "queued"})).json()["items"] == []


async def test_unusable_metadata_is_ignored_with_a_warning(gateway: httpx.AsyncClient, clip: SynthClip) -> None:
    """An NPZ whose fps is an array and whose spacing is negative is analysed in pixels, and says so."""
    buf = io.BytesIO()
    np.savez(buf, frames=clip.frames, fps=np.array([25.0, 30.0]), pixel_spacing_mm=np.float64(-1.0))
    r = await upload(gateway, content=buf.getvalue(), name="meta.npz", wait=True)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["fps"] is None and result["pixel_spacing_mm"] is None and result["csa"]["unit"] == "px"
    assert any("'fps'" in w for w in result["warnings"]) and any("'pixel_spacing_mm'" in w for w in result["warnings"])


async def test_bad_fields(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    path = write_clip("png", clip.frames, files_dir)
    assert_error(await upload(gateway, path, stride=0), 422, "validation_error")
    assert_error(await upload(gateway, path, stride="two"), 422, "validation_error")
    assert_error(await upload(gateway, path, pixel_spacing_mm=-1), 422, "validation_error")
    body = assert_error(await upload(gateway, path, pixel_spacing_mm=1e308), 422, "validation_error")
    assert "between 0.001 and 10" in body["error"]["message"]
    body = assert_error(await upload(gateway, path, pixel_spacing=0.1, wait=True), 422, "validation_error")  # misspelt
    assert "'pixel_spacing'" in body["error"]["message"] and "pixel_spacing_mm" in body["error"]["message"]
    assert_error(await upload(gateway, path, wait="maybe"), 422, "validation_error")
    r = await gateway.post("/v1/analyses", data={"wait": "true"}, files={"other": ("x.png", b"123")})
    assert_error(r, 422, "validation_error")
    two = [("file", ("a.png", path.read_bytes())), ("file", ("b.png", path.read_bytes()))]
    body = assert_error(await gateway.post("/v1/analyses", files=two), 422, "validation_error")  # starlette's own 400
    assert "Too many files" in body["error"]["message"]
    assert_error(await gateway.post("/v1/batches", files=two), 422, "validation_error")
    r = await gateway.post("/v1/analyses", files={"file": ("a.png", path.read_bytes())}, data={"stride": ["8", "1"]})
    assert "'stride' given more than once" in assert_error(r, 422, "validation_error")["error"]["message"]
    r = await gateway.post("/v1/analyses", content=b"not multipart", headers={"content-type": "text/plain"})
    assert r.status_code in (415, 422) and "error" in r.json()


async def test_bad_query_parameters_are_422s_never_500s_nor_ignored(gateway: httpx.AsyncClient) -> None:
    import base64
    import json

    def cursor(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    body = assert_error(await gateway.get("/v1/analyses", params={"batch_id": "x"}), 422, "validation_error")
    assert "'batch_id'" in body["error"]["message"] and "plane" in body["error"]["message"]  # names it, lists the real ones
    body = assert_error(await gateway.get("/v1/analyses?limit=1&limit=2"), 422, "validation_error")
    assert "'limit' given more than once" in body["error"]["message"]
    assert_error(await gateway.get("/v1/batches", params={"status": "done"}), 422, "validation_error")
    assert_error(await gateway.get("/v1/analyses/abc", params={"include_frame": "false"}), 422, "validation_error")
    assert_error(await gateway.get("/v1/analyses/abc/masks.npz", params={"x": "1"}), 422, "validation_error")
    # far-off bounds clamp instead of overflowing in the UTC conversion
    for bound in ({"created_before": "9999-12-31T23:59:59-05:00"}, {"created_after": "0001-01-01T00:00:00+05:00"}):
        assert (await gateway.get("/v1/analyses", params=bound)).status_code == 200
    year_one = cursor({"t": "0001-01-01T00:00:00+05:00", "i": "z", "k": "a"})
    assert (await gateway.get("/v1/analyses", params={"cursor": year_one})).json()["items"] == []
    nested = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    for route in ("/v1/analyses", "/v1/batches"):
        assert_error(await gateway.get(route, params={"cursor": nested}), 422, "validation_error")
        assert_error(await gateway.get(route, params={"cursor": cursor({"t": 1, "i": "z"})}), 422, "validation_error")
    # a cursor of one listing is refused by the other
    analyses_cursor = cursor({"t": "2026-01-01T00:00:00+00:00", "i": "z", "k": "a"})
    body = assert_error(await gateway.get("/v1/batches", params={"cursor": analyses_cursor}), 422, "validation_error")
    assert "same listing" in body["error"]["message"]


async def test_upload_size_limit_while_streaming(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, max_upload_bytes=20_000)
    big = write_clip("npy", clip.frames, tmp_path / "files")  # 16*128*160 = 327 kB
    async with running_gateway(settings) as client:
        assert_error(await upload(client, big), 413, "payload_too_large")

        async def chunks():  # no Content-Length: the limit is enforced on the stream
            body = big.read_bytes()
            head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="clip.npy"\r\n\r\n'
            yield head
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]
            yield b"\r\n--b--\r\n"

        r = await client.post("/v1/analyses", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(r, 413, "payload_too_large")
        assert not list((tmp_path / "data" / "uploads").iterdir())  # nothing kept
        small = write_clip("png", clip.frames, tmp_path / "files")
        assert (await upload(client, small, wait=True)).status_code == 200


async def test_queue_full_gives_429(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, workers=0, queue_max=2)
    path = write_clip("png", clip.frames, tmp_path / "files")
    async with running_gateway(settings) as client:
        assert (await upload(client, path)).status_code == 202
        assert (await upload(client, path)).status_code == 202
        r = await upload(client, path)
        assert_error(r, 429, "queue_full")
        assert int(r.headers["retry-after"]) > 0
        assert "ultramn_queue_depth 2.0" in (await client.get("/metrics")).text


async def test_deleting_a_queued_job_frees_its_place_in_the_queue(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, workers=0, queue_max=2)
    path = write_clip("png", clip.frames, tmp_path / "files")
    async with running_gateway(settings) as client:
        ids = [(await upload(client, path)).json()["id"] for _ in range(2)]
        assert_error(await upload(client, path), 429, "queue_full")
        assert (await client.delete(f"/v1/analyses/{ids[0]}")).status_code == 204
        assert (await upload(client, path)).status_code == 202
        assert "ultramn_queue_depth 2.0" in (await client.get("/metrics")).text


async def test_a_full_disk_during_an_upload_is_a_507_and_leaves_no_partial_file(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil

    real_copy = shutil.copyfileobj

    def disk_full(src: Any, dst: Any, length: int = 0) -> None:  # injected fault: ENOSPC half-way
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    settings = make_settings(tmp_path / "data", triton_server.grpc_url, workers=0)
    path = write_clip("npz", clip.frames, tmp_path / "files")
    async with running_gateway(settings) as client:
        monkeypatch.setattr(shutil, "copyfileobj", disk_full)
        assert_error(await upload(client, path), 507, "insufficient_storage")
        assert_error(await client.post("/v1/batches", files={"file": ("b.zip", b"PK\x03\x04" + b"0" * 4000)}), 507, "insufficient_storage")
        monkeypatch.setattr(shutil, "copyfileobj", real_copy)
        assert not list((tmp_path / "data" / "uploads").iterdir())
        assert not list((tmp_path / "data" / "batches").glob(".*"))
        assert (await upload(client, path)).status_code == 202


async def test_storage_failures_while_parsing_or_extracting_are_507_or_503_not_500_or_corrupt(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import errno
    import os
    import tempfile
    import zipfile

    import starlette.formparsers

    from ultramn.data import archives

    class FullSpool(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
        def write(self, data: Any) -> int:  # injected fault: the multipart parser's spool hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")

    def failing_open(errno_code: int) -> Any:
        def fake(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if mode == "xb":  # injected fault: writing an extracted member fails
                raise OSError(errno_code, os.strerror(errno_code))
            return builtins.open(file, mode, *args, **kwargs)

        return fake

    settings = make_settings(tmp_path / "data", triton_server.grpc_url, workers=0)
    path = write_clip("npz", clip.frames, tmp_path / "files")
    archive = tmp_path / "clips.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "exam/clip.npz")
        zf.writestr("exam/notes.txt", "not a clip")
    async with running_gateway(settings) as client:
        with monkeypatch.context() as m:
            m.setattr(starlette.formparsers, "SpooledTemporaryFile", FullSpool)
            assert_error(await upload(client, path), 507, "insufficient_storage")
        for code, status, name in (
            (errno.ENOSPC, 507, "insufficient_storage"),
            (errno.EFBIG, 507, "insufficient_storage"),
            (errno.EACCES, 503, "storage_error"),
        ):
            with monkeypatch.context() as m:
                m.setattr(archives, "open", failing_open(code), raising=False)
                r = await client.post("/v1/batches", files={"file": ("clips.zip", archive.read_bytes())})
                assert_error(r, status, name)  # not 422 corrupt_file: the archive is fine, retrying later helps
        assert not list((tmp_path / "data" / "batches").glob(".*")) and not list((tmp_path / "data" / "uploads").iterdir())
        assert (await client.post("/v1/batches", files={"file": ("clips.zip", archive.read_bytes())})).status_code == 202


def test_files_left_half_written_by_a_killed_process_are_removed_at_start(tmp_path: Path) -> None:
    from gateway.store import FileStore

    store = FileStore(tmp_path)
    kept = [store.upload_path("a" * 32, ".npz"), store.masks / f"{'a' * 32}.npz"]
    left = [store.staging_path("b" * 32), store.masks / f"{'b' * 32}.tmp.npz", tmp_path / "batches" / f".{'c' * 32}" / "archive.zip"]
    for path in (*kept, *left):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert store.remove_leftovers() == 3
    assert all(p.exists() for p in kept) and not any(p.exists() for p in left)
    assert not (tmp_path / "batches" / f".{'c' * 32}").exists()


def test_make_up_with_an_unusable_data_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "a-file").write_text("not a folder")
    env = {**os.environ, "ULTRAMN_DATA_DIR": str(tmp_path / "a-file" / "data")}
    r = subprocess.run([sys.executable, "-m", "gateway.up"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "data folder:" in r.stderr and "set ULTRAMN_DATA_DIR to a writable folder" in r.stderr


async def test_a_clip_over_the_pixel_budget_is_a_422_naming_it(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    n, h, w = clip.frames.shape
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, workers=0, max_clip_pixels=n * h * w - 1)
    path = write_clip("npz", clip.frames, tmp_path / "files")
    async with running_gateway(settings) as client:
        body = assert_error(await upload(client, path), 422, "limit_exceeded")
        assert f"exceed the limit of {n * h * w - 1} pixels" in body["error"]["message"]
        assert (await upload(client, write_clip("npz", clip.frames[:-1], tmp_path / "shorter"))).status_code == 202


async def test_odd_methods_share_one_metrics_label_and_data_answers_are_not_cached(gateway: httpx.AsyncClient) -> None:
    for i in range(5):
        await gateway.request(f"FOO{i}", "/nope")  # any token is a method to HTTP
    text = (await gateway.get("/metrics")).text
    assert 'method="OTHER"' in text and "FOO" not in text
    r = await gateway.get("/v1/analyses")
    assert r.headers["cache-control"] == "no-store"  # patient data: not kept by browsers or proxies
    assert "no-store" not in (await gateway.get("/health/live")).headers.get("cache-control", "")
