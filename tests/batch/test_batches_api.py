"""``/v1/batches`` on the REAL app (lifespan running) and the REAL Triton: archive in, analyses out."""

from __future__ import annotations

import asyncio
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest

from tests.batch.archives import CORRUPT, N_FRAMES, ClipSet, malicious, png_bytes
from tests.gateway.helpers import assert_error, make_settings, running_gateway
from ultramn.serving.embedded import EmbeddedTriton

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def gateway(
    anyio_backend: str, triton_server: EmbeddedTriton, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a queue smaller than a batch (the batch feeds it as it drains)."""
    data = tmp_path_factory.mktemp("gateway")
    settings = make_settings(data, triton_server.grpc_url, queue_max=2, workers=1)
    async with running_gateway(settings) as client:
        client.data_dir = data  # type: ignore[attr-defined]
        yield client


async def post_batch(client: httpx.AsyncClient, path: Path, **fields: Any) -> httpx.Response:
    return await client.post("/v1/batches", files={"file": (path.name, path.read_bytes())}, data={k: str(v) for k, v in fields.items()})


async def wait_batch(client: httpx.AsyncClient, batch_id: str, timeout: float = 90.0) -> dict[str, Any]:
    seen: list[float] = []
    with anyio.fail_after(timeout):
        while True:
            r = await client.get(f"/v1/batches/{batch_id}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            seen.append(body["progress"]["fraction"])
            if body["status"] == "done":
                assert seen == sorted(seen), "progress went backwards"
                return body
            await anyio.sleep(0.1)


async def test_archive_becomes_a_batch_of_analyses(gateway: httpx.AsyncClient, clip_set: ClipSet) -> None:
    r = await post_batch(gateway, clip_set.archive, pixel_spacing_mm=0.1)
    assert r.status_code == 202, r.text
    created = r.json()
    batch_id = created["id"]
    assert r.headers["location"] == f"/v1/batches/{batch_id}"
    assert created["n_clips"] == 4 and created["n_skipped"] == 1 and created["progress"]["total"] == 4
    names = {c["name"]: c for c in created["clips"]}
    assert set(names) == set(clip_set.clips) and [c["index"] for c in created["clips"]] == [0, 1, 2, 3]

    done = await wait_batch(gateway, batch_id)
    assert done["counts"]["succeeded"] == 3 and done["counts"]["failed"] == 1
    assert done["progress"] == {"done": 4, "total": 4, "fraction": 1.0}
    by_id = {c["id"]: c for c in done["clips"]}
    assert all(c["name"] is None for c in done["clips"])  # names are not stored
    for name, clip in names.items():
        view = by_id[clip["id"]]
        a = await gateway.get(f"/v1/analyses/{clip['id']}", params={"include_frames": "false"})
        assert a.status_code == 200
        body = a.json()
        if name == CORRUPT:
            assert view["status"] == body["status"] == "failed"
            # the code a single upload of this file gets (415's code), not a generic corrupt_file
            assert view["error"]["code"] == body["error"]["code"] == "unsupported_media_type"
            assert "unrecognised content" in view["error"]["message"]
        else:
            assert view["status"] == body["status"] == "succeeded" and view["plane"] == body["plane"]
            assert body["result"]["n_frames"] == N_FRAMES and body["result"]["spacing_source"] == "request"
            m = await gateway.get(view["links"]["masks_npz"])
            assert m.status_code == 200

    listed = (await gateway.get("/v1/batches")).json()
    assert listed["items"][0]["id"] == batch_id and listed["items"][0]["status"] == "done" and "clips" not in listed["items"][0]
    assert (await gateway.get("/v1/batches/nope")).status_code == 404


async def test_tar_batch_and_pagination(gateway: httpx.AsyncClient, clip_set: ClipSet) -> None:
    first = await post_batch(gateway, clip_set.tar)  # two batches of its own: pagination needs more than one
    assert first.status_code == 202, first.text
    r = await post_batch(gateway, clip_set.tar)
    assert r.status_code == 202, r.text
    await wait_batch(gateway, first.json()["id"])
    await wait_batch(gateway, r.json()["id"])
    page = (await gateway.get("/v1/batches", params={"limit": 1})).json()
    assert len(page["items"]) == 1 and page["items"][0]["id"] == r.json()["id"] and page["next_cursor"]
    nxt = (await gateway.get("/v1/batches", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert len(nxt["items"]) == 1 and nxt["items"][0]["id"] != page["items"][0]["id"]


async def test_hostile_and_bad_archives_are_refused(gateway: httpx.AsyncClient, tmp_path: Path) -> None:
    expected = {
        "traversal": "unsafe_archive",
        "traversal_nested": "unsafe_archive",
        "absolute": "unsafe_archive",
        "windows_absolute": "unsafe_archive",
        "zip_symlink_out": "unsafe_archive",
        "tar_symlink_out": "unsafe_archive",
        "tar_hardlink_out": "unsafe_archive",
        "zip_bomb": "limit_exceeded",
        "tar_bomb": "limit_exceeded",
        "too_many": "limit_exceeded",
    }
    data_dir: Path = gateway.data_dir  # type: ignore[attr-defined]
    uploads_before = sorted(p.name for p in (data_dir / "uploads").iterdir())
    for what, path in malicious(tmp_path / "evil").items():
        body = assert_error(await post_batch(gateway, path), 422, expected[what])
        assert body["error"]["message"].startswith("archive."), (what, body)  # names the rule, not the client's file name
    png = tmp_path / "still.png"
    png.write_bytes(png_bytes(np.zeros((16, 16), np.uint8)))
    assert_error(await post_batch(gateway, png), 415, "unsupported_media_type")
    npz = tmp_path / "clip.npz"
    np.savez(npz, frames=np.zeros((4, 16, 16), np.uint8))
    body = assert_error(await post_batch(gateway, npz), 415, "unsupported_media_type")  # one clip, not a batch
    assert "POST /v1/analyses" in body["error"]["message"]
    notes = tmp_path / "notes.zip"
    with zipfile.ZipFile(notes, "w") as zf:
        zf.writestr("readme.txt", "nothing to analyse")
    assert_error(await post_batch(gateway, notes), 422, "no_clips")
    full = tmp_path / "exam.tar.gz"
    with tarfile.open(full, "w:gz") as tf:
        tf.add(notes, arcname="exam/notes.zip")
        tf.add(npz, arcname="exam/clip.npz")
    for cut in (20, full.stat().st_size // 2):  # a gzip stream that ends too early (the 20-byte one was a 500)
        cut_off = tmp_path / f"cut{cut}.tar.gz"
        cut_off.write_bytes(full.read_bytes()[:cut])
        body = assert_error(await post_batch(gateway, cut_off), 422, "corrupt_file")
        assert "Compressed file ended before the end-of-stream marker" in body["error"]["message"]
    assert_error(await gateway.post("/v1/batches", data={"x": "1"}), 422, "validation_error")
    misspelt = assert_error(await post_batch(gateway, notes, pixel_spacing=0.1), 422, "validation_error")
    assert "'pixel_spacing'" in misspelt["error"]["message"] and "pixel_spacing_mm" in misspelt["error"]["message"]
    assert_error(await post_batch(gateway, notes, pixel_spacing_mm=80), 422, "validation_error")  # um taken for mm
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == uploads_before  # nothing kept
    assert not any((data_dir / "batches").iterdir())  # no staging or extraction left behind


async def test_batch_limits_come_from_settings(triton_server: EmbeddedTriton, clip_set: ClipSet, tmp_path: Path) -> None:
    """``ULTRAMN_MAX_BATCH_CLIPS`` / ``ULTRAMN_MAX_ARCHIVE_MEMBERS`` bound a batch: 422, nothing kept."""
    data = tmp_path / "data"
    settings = make_settings(data, triton_server.grpc_url, max_batch_clips=3, max_archive_members=4)
    async with running_gateway(settings) as client:
        body = assert_error(await post_batch(client, clip_set.archive), 422, "limit_exceeded")
        assert "members" in body["error"]["message"], body  # the archive holds 4 clips + 1 other file
    settings = make_settings(data, triton_server.grpc_url, max_batch_clips=3)
    async with running_gateway(settings) as client:
        body = assert_error(await post_batch(client, clip_set.archive), 422, "limit_exceeded")
        assert "4 clips exceed the limit of 3" in body["error"]["message"], body
        assert not any((data / "uploads").iterdir()) and not any((data / "batches").iterdir())
        assert (await client.get("/v1/batches")).json()["items"] == []


async def test_deleted_clips_count_as_finished_and_are_not_fed(clip_set: ClipSet, tmp_path: Path) -> None:
    """Triton is away, so the clips stay queued: deleting their analyses moves progress forward,
    never back, a batch whose clips are all deleted is done, and the feeder skips deleted clips."""
    from ultramn.serving.embedded import free_ports

    settings = make_settings(tmp_path / "data", f"127.0.0.1:{free_ports(1)[0]}", queue_max=1, workers=1)
    async with running_gateway(settings) as client:
        created = (await post_batch(client, clip_set.archive)).json()
        batch_id, ids = created["id"], [c["id"] for c in created["clips"]]
        first = (await client.get(f"/v1/batches/{batch_id}")).json()
        assert first["status"] in ("queued", "running") and first["progress"] == {"done": 0, "total": 4, "fraction": 0.0}
        for job_id in ids[2:]:  # not yet handed to the queue (it holds one)
            assert (await client.delete(f"/v1/analyses/{job_id}")).status_code == 204
        half = (await client.get(f"/v1/batches/{batch_id}")).json()
        assert half["n_clips"] == 4 and half["counts"]["deleted"] == 2 and len(half["clips"]) == 2
        assert half["progress"] == {"done": 2, "total": 4, "fraction": 0.5} and half["status"] != "done"
        listed = (await client.get("/v1/batches")).json()["items"][0]
        assert listed["counts"] == half["counts"] and listed["progress"] == half["progress"]
        for job_id in ids[:2]:
            assert (await client.delete(f"/v1/analyses/{job_id}")).status_code == 204
        with anyio.fail_after(10):  # the feeder finds nothing left to feed
            while any(t.get_name() == f"batch-feed-{batch_id}" for t in asyncio.all_tasks()):
                await anyio.sleep(0.05)
        gone = (await client.get(f"/v1/batches/{batch_id}")).json()
        assert gone["status"] == "done" and gone["counts"]["deleted"] == 4 and gone["clips"] == []
        assert gone["progress"] == {"done": 4, "total": 4, "fraction": 1.0}
        assert "ultramn_queue_depth 0.0" in (await client.get("/metrics")).text


async def test_a_draining_batch_neither_locks_out_nor_delays_single_uploads(
    triton_server: EmbeddedTriton, clip_set: ClipSet, tmp_path: Path
) -> None:
    """Batch clips have a queue limit of their own and run after waiting single uploads; a
    restart puts the batch back without counting it against single uploads."""
    from datetime import datetime

    from tests.gateway.helpers import upload, wait_done

    still = tmp_path / "still.npy"
    np.save(still, np.zeros((4, 96, 128), np.uint8) + 60)
    data = tmp_path / "data"
    async with running_gateway(make_settings(data, triton_server.grpc_url, queue_max=2, workers=0)) as client:
        batch = (await post_batch(client, clip_set.archive)).json()  # 4 clips, 2 handed to the queue
        for _ in range(2):
            assert (await upload(client, still)).status_code == 202  # the batch does not fill the uploads' room
        assert_error(await upload(client, still), 429, "queue_full")
    # restart: the 6 queued rows come back, the 4 batch clips do not count against uploads
    async with running_gateway(make_settings(data, triton_server.grpc_url, queue_max=3, workers=1)) as client:
        late = (await upload(client, still)).json()["id"]
        done = await wait_batch(client, batch["id"])
        assert done["counts"]["succeeded"] == 3 and done["counts"]["failed"] == 1
        finished_late = datetime.fromisoformat((await wait_done(client, late))["updated_at"])
        batch_finished = sorted(
            [datetime.fromisoformat((await client.get(f"/v1/analyses/{c['id']}")).json()["updated_at"]) for c in done["clips"]]
        )
        assert finished_late < batch_finished[-2]  # the upload that came last did not wait for the batch


async def test_a_retried_archive_upload_with_its_idempotency_key_gets_the_batch_back(
    triton_server: EmbeddedTriton, clip_set: ClipSet, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with running_gateway(make_settings(data, triton_server.grpc_url, workers=0)) as client:
        key = {"Idempotency-Key": "archive-1"}
        post = {"files": {"file": (clip_set.archive.name, clip_set.archive.read_bytes())}, "headers": key}
        first = await client.post("/v1/batches", **post)  # type: ignore[arg-type]
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        again = await client.post("/v1/batches", **post)  # type: ignore[arg-type]
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"] and again.headers["location"] == first.headers["location"]
        assert [c["id"] for c in again.json()["clips"]] == [c["id"] for c in first.json()["clips"]]
        assert all(c["name"] is None for c in again.json()["clips"])  # names are not stored
        assert len((await client.get("/v1/batches")).json()["items"]) == 1
        assert len((await client.get("/v1/analyses")).json()["items"]) == 4  # not 8
        other = await client.post("/v1/batches", files=post["files"], headers={"Idempotency-Key": "archive-2"})  # type: ignore[arg-type]
        assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
        bad = await client.post("/v1/batches", files=post["files"], headers={"Idempotency-Key": "has space"})  # type: ignore[arg-type]
        assert_error(bad, 422, "validation_error")
