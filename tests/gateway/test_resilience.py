"""Triton going away mid-job and the gateway restarting: accepted work is never lost."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import anyio
import numpy as np
import pytest

from gateway.store import AnalysisRepository
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload, wait_done, write_clip
from tests.serving.fixtures import ServedModel
from ultramn.contract import CONTRACT
from ultramn.serving.embedded import EmbeddedTriton, Ports, free_ports

pytestmark = pytest.mark.anyio


def _own_server(served_model: ServedModel, tmp_path: Path) -> EmbeddedTriton:
    """A server of the test's own on free ports (not yet started), to stop and ``restart`` on the same ports."""
    return EmbeddedTriton(served_model.repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "triton.log")


async def test_triton_stopped_mid_job_then_back(served_model: ServedModel, tmp_path: Path, clip: SynthClip) -> None:
    server = await anyio.to_thread.run_sync(_own_server(served_model, tmp_path).start)
    try:
        settings = make_settings(tmp_path / "data", server.grpc_url, infer_concurrency=2)
        long_clip = write_clip("npy", np.tile(clip.frames, (10, 1, 1)), tmp_path / "long")  # 160 frames
        short_clip = write_clip("png", clip.frames, tmp_path / "short")
        async with running_gateway(settings) as client:
            long_job = await upload(client, long_clip, stride=1)  # 153 windows
            assert long_job.status_code == 202
            job_id = long_job.json()["id"]
            with anyio.fail_after(60):
                while (await client.get(f"/v1/analyses/{job_id}")).json()["progress"]["windows_done"] < 1:
                    await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(server.stop)  # mid-job

            r = await upload(client, short_clip, wait=True)
            body = assert_error(r, 503, "triton_unavailable")
            assert int(r.headers["retry-after"]) > 0 and r.headers["location"] == f"/v1/analyses/{body['error']['id']}"
            waiting_id = body["error"]["id"]
            assert_error(await client.get("/health/ready"), 503, "triton_unavailable")
            with anyio.fail_after(30):
                while (job := (await client.get(f"/v1/analyses/{job_id}")).json())["error"] is None:
                    await anyio.sleep(0.1)
            assert job["status"] in ("queued", "running") and job["error"]["code"] == "triton_unavailable"
            assert (await client.get(f"/v1/analyses/{waiting_id}")).json()["status"] in ("queued", "running")

            await anyio.to_thread.run_sync(server.restart)  # Triton is back on the same ports
            for jid in (waiting_id, job_id):
                done = await wait_done(client, jid, timeout=120)
                assert done["status"] == "succeeded", done
                assert done["error"] is None and done["attempts"] >= 2
            assert (await client.get("/health/ready")).status_code == 200
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def test_a_dead_model_backend_is_not_ready_and_keeps_the_job(served_model: ServedModel, tmp_path: Path, clip: SynthClip) -> None:
    """Triton 2.51 neither restarts a killed python-backend stub nor stops calling the model ready:
    the gateway must say not ready, keep the job, and finish it once Triton is restarted."""
    import os
    import signal

    server = await anyio.to_thread.run_sync(_own_server(served_model, tmp_path).start)
    try:
        settings = make_settings(tmp_path / "data", server.grpc_url)
        path = write_clip("png", clip.frames, tmp_path / "files")
        async with running_gateway(settings) as client:
            assert (await upload(client, path, wait=True)).status_code == 200
            stubs = server.backend_stub_pids()
            assert stubs, "no python backend stub found"
            for pid in stubs:
                os.kill(pid, signal.SIGKILL)  # stands in for the OOM killer
            r = await upload(client, path, wait=True)
            job_id = assert_error(r, 503, "triton_unavailable")["error"]["id"]
            ready = await client.get("/health/ready")
            assert ready.status_code == 503 and "backend process is dead" in ready.json()["error"]["message"]
            assert (await client.get(f"/v1/analyses/{job_id}")).json()["status"] in ("queued", "running")  # kept, not failed

            await anyio.to_thread.run_sync(server.restart)  # on the same ports
            done = await wait_done(client, job_id, timeout=120)
            assert done["status"] == "succeeded", done
            assert (await client.get("/health/ready")).status_code == 200
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def test_restart_resumes_pending_jobs(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    data = tmp_path / "data"
    path = write_clip("npz", clip.frames, tmp_path / "files")
    async with running_gateway(make_settings(data, triton_server.grpc_url, workers=0)) as client:  # accept only
        ids = [(await upload(client, path)).json()["id"] for _ in range(2)]
        assert {(await client.get(f"/v1/analyses/{i}")).json()["status"] for i in ids} == {"queued"}
        # a queued job: its masks are not ready (409), but a frame it does not have is simply absent (404)
        assert_error(await client.get(f"/v1/analyses/{ids[0]}/frames/3/mask.png"), 409, "not_ready")
        assert_error(await client.get(f"/v1/analyses/{ids[0]}/frames/16/mask.png"), 404, "not_found")
        assert_error(await client.get(f"/v1/analyses/{ids[0]}/frames/16/overlay.png"), 404, "not_found")
    # the first job was being processed when the process died
    settings = make_settings(data, triton_server.grpc_url)
    repo = AnalysisRepository(settings.sqlalchemy_url)
    repo.update(ids[0], status="running")
    repo.close()
    async with running_gateway(settings) as client:
        for job_id in ids:
            done = await wait_done(client, job_id)
            assert done["status"] == "succeeded" and done["result"]["n_frames"] == 16


async def test_a_result_that_cannot_be_stored_fails_the_job_and_frees_the_worker(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip
) -> None:
    data = tmp_path / "data"
    path = write_clip("npz", clip.frames, tmp_path / "files")
    async with running_gateway(make_settings(data, triton_server.grpc_url, workers=1)) as client:
        masks = data / "masks"
        masks.rmdir()
        masks.write_text("a file where the mask folder was: every save fails")  # injected fault
        job_id = (await upload(client, path)).json()["id"]
        done = await wait_done(client, job_id)
        assert done["status"] == "failed" and done["error"]["code"] == "storage_error"
        assert "could not store the result" in done["error"]["message"]
        masks.unlink()
        masks.mkdir()
        again = await wait_done(client, (await upload(client, path)).json()["id"])  # the worker is still there
        assert again["status"] == "succeeded"
        assert not list(data.rglob("*.tmp.npz"))


async def test_a_retried_upload_with_its_idempotency_key_gets_the_accepted_job_back(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip
) -> None:
    data = tmp_path / "data"
    path = write_clip("npz", clip.frames, tmp_path / "files")
    key = {"Idempotency-Key": "clip-a-attempt"}
    async with running_gateway(make_settings(data, triton_server.grpc_url, workers=1)) as client:
        first = await upload(client, path, headers=key)
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        job_id = first.json()["id"]
        again = await upload(client, path, headers=key)  # the answer was lost: the client sends it again
        assert again.status_code in (200, 202) and again.json()["id"] == job_id
        assert again.headers["idempotent-replayed"] == "true" and again.headers["location"] == f"/v1/analyses/{job_id}"
        assert (await wait_done(client, job_id))["status"] == "succeeded"
        done = await upload(client, path, headers=key, wait=True)
        assert done.status_code == 200 and done.json()["id"] == job_id and done.json()["result"]["n_frames"] == 16
        other = await upload(client, path, headers={"Idempotency-Key": "clip-b"}, wait=True)  # another key: another job
        assert other.status_code == 200 and other.json()["id"] != job_id
        listed = (await client.get("/v1/analyses")).json()["items"]
        assert sorted(item["id"] for item in listed) == sorted([job_id, other.json()["id"]])
        assert len(list((data / "uploads").iterdir())) == 2  # the replays stored nothing

        # a failed job gives its key up: the retry is analysed afresh, the failed job stays listed
        masks = data / "masks"
        masks.rename(data / "masks.away")
        masks.write_text("a file where the mask folder was: every save fails")  # injected fault
        fail_key = {"Idempotency-Key": "clip-c"}
        failed_id = (await upload(client, path, headers=fail_key)).json()["id"]
        assert (await wait_done(client, failed_id))["status"] == "failed"
        masks.unlink()
        (data / "masks.away").rename(masks)
        retry = await upload(client, path, headers=fail_key, wait=True)
        assert retry.status_code == 200 and retry.json()["id"] != failed_id and "idempotent-replayed" not in retry.headers
        assert (await client.get(f"/v1/analyses/{failed_id}")).json()["status"] == "failed"

        # a deleted job's key is free again
        assert (await client.delete(f"/v1/analyses/{job_id}")).status_code == 204
        fresh = await upload(client, path, headers=key, wait=True)
        assert fresh.status_code == 200 and fresh.json()["id"] not in (job_id, failed_id)

        for bad in ("", "has space", "x" * 65):
            assert_error(await upload(client, path, headers={"Idempotency-Key": bad}), 422, "validation_error")


def _reexport(repository: Path, checkpoint: Path, encoding: str, config_encoding: str) -> None:
    """Rewrite ``repository`` as an operator might: the ONNX with ``encoding``, config.pbtxt for ``config_encoding``."""
    from export.onnx_export import export_onnx, load_model
    from export.repository import RepoSettings, write_repository
    from ultramn.serving.build import onnx_model_path

    write_repository(repository, RepoSettings(target="cpu", encoding=config_encoding))  # type: ignore[arg-type]
    model, _ = load_model(checkpoint)
    export_onnx(model, onnx_model_path(repository), encoding=encoding, checkpoint=checkpoint)  # type: ignore[arg-type]


async def test_triton_back_with_another_model_is_checked_again_not_misread(
    served_model: ServedModel, tmp_path: Path, clip: SynthClip
) -> None:
    """Triton restarted on a model whose outputs are float32 (a consistent repository, but not the
    contract): the gateway checks the model again, says not ready, and fails the job with
    contract_mismatch instead of reading float probabilities as uint8 (all-empty masks)."""
    repository = tmp_path / "cpu"
    shutil.copytree(served_model.repository, repository)
    own = EmbeddedTriton(repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "triton.log")
    server = await anyio.to_thread.run_sync(own.start)
    try:
        path = write_clip("png", clip.frames, tmp_path / "files")
        async with running_gateway(make_settings(tmp_path / "data", server.grpc_url, workers=1)) as client:
            assert (await upload(client, path, wait=True)).status_code == 200
            await anyio.to_thread.run_sync(server.stop)
            assert_error(await upload(client, path, wait=True), 503, "triton_unavailable")
            await anyio.to_thread.run_sync(_reexport, repository, served_model.checkpoint, "probs_f32", "probs_f32")
            await anyio.to_thread.run_sync(server.restart)
            ready = await client.get("/health/ready")
            assert ready.status_code == 503, ready.text
            after = await upload(client, path)
            done = await wait_done(client, after.json()["id"], timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "contract_mismatch", done
            assert "mask_probs" in done["error"]["message"]
    finally:
        await anyio.to_thread.run_sync(server.stop)


async def test_many_windows_after_a_restart_check_the_model_once(triton_server: EmbeddedTriton) -> None:
    """After Triton was away every window in flight needs the model checked again: one check
    (one config and metadata request pair) serves them all, not one per window."""
    from gateway.triton_client import TritonClient

    client = TritonClient(triton_server.grpc_url)
    await client.start()
    try:
        calls = []
        real = client.client.get_model_config

        async def counted(*args: object, **kwargs: object) -> object:
            calls.append(1)
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        client.client.get_model_config = counted  # type: ignore[method-assign]
        client._checked = False  # as after a TritonUnavailableError
        window = np.zeros(CONTRACT.inputs[0].dims, np.float32)
        outs = await asyncio.gather(*(client.infer_window(window) for _ in range(24)))
        assert len(outs) == 24 and len(calls) == 1
    finally:
        await client.close()


async def test_deleted_jobs_leave_no_state_behind_and_a_waiting_upload_hears_of_the_delete(
    triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip
) -> None:
    path = write_clip("npz", clip.frames, tmp_path / "files")
    async with running_gateway(make_settings(tmp_path / "data", triton_server.grpc_url, workers=0)) as client:
        jobs = client.app.state.ultramn.jobs  # type: ignore[attr-defined]
        ids = [(await upload(client, path)).json()["id"] for _ in range(5)]
        for job_id in ids:
            assert (await client.delete(f"/v1/analyses/{job_id}")).status_code == 204
        assert not jobs._decode_ms and not jobs.progress and jobs.depth == 0
        # a wait=true upload whose job is deleted while it waits: 404, not a 202 for a job that is gone
        waiting = asyncio.ensure_future(upload(client, path, wait=True))
        with anyio.fail_after(10):
            while not (items := (await client.get("/v1/analyses")).json()["items"]):
                await anyio.sleep(0.05)
        assert (await client.delete(f"/v1/analyses/{items[0]['id']}")).status_code == 204
        assert_error(await waiting, 404, "not_found")


async def test_a_waiting_upload_whose_client_hangs_up_stops_waiting() -> None:
    """``wait=true`` polls the connection: a client that is gone gets no minute-long wait."""
    from gateway.api.routes.analyses import _wait_while_connected
    from gateway.worker import Outcome

    class GoneRequest:  # injected fault: the client disconnected
        async def is_disconnected(self) -> bool:
            return True

    class SlowJobs:
        async def wait(self, job_id: str, timeout: float, fut: object) -> Outcome:
            await asyncio.sleep(timeout)
            return Outcome.TIMEOUT

    with anyio.fail_after(5):
        assert await _wait_while_connected(GoneRequest(), SlowJobs(), "x", 60.0, None) is None  # type: ignore[arg-type]
