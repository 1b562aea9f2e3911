"""The API around an analysis: detail, list/filters/pagination, PNGs, npz, delete, health, metrics, auth."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload, wait_done, write_clip
from tests.serving.fixtures import ServedModel
from ultramn.serving.build import file_sha256
from ultramn.serving.embedded import EmbeddedTriton

pytestmark = pytest.mark.anyio


async def test_async_job_detail_pngs_and_delete(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    path = write_clip("npz", clip.frames, files_dir)
    r = await upload(gateway, path)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded") and r.headers["location"] == f"/v1/analyses/{job['id']}"
    assert job["progress"]["windows_total"] == 3
    done = await wait_done(gateway, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == {"windows_done": 3, "windows_total": 3, "fraction": 1.0}
    slim = (await gateway.get(f"/v1/analyses/{job['id']}", params={"include_frames": "false"})).json()
    assert "frames" not in slim["result"] and slim["result"]["n_frames"] == 16

    with np.load(io.BytesIO((await gateway.get(done["links"]["masks_npz"])).content)) as data:
        masks = data["masks"]
    mask_png = await gateway.get(f"/v1/analyses/{job['id']}/frames/2/mask.png")
    assert mask_png.status_code == 200 and mask_png.headers["content-type"] == "image/png"
    png = np.asarray(Image.open(io.BytesIO(mask_png.content)))
    assert png.shape == (128, 160) and np.array_equal(png > 0, masks[2] > 0)
    overlay = await gateway.get(f"/v1/analyses/{job['id']}/frames/2/overlay.png")
    rgb = np.asarray(Image.open(io.BytesIO(overlay.content)))
    assert rgb.shape == (128, 160, 3)
    outside = masks[2] == 0
    np.testing.assert_array_equal(rgb[outside], np.repeat(clip.frames[2][outside][:, None], 3, axis=1))  # untouched
    if (~outside).any():
        assert not np.array_equal(rgb[~outside][:, 2], clip.frames[2][~outside])  # tinted / outlined
    assert_error(await gateway.get(f"/v1/analyses/{job['id']}/frames/16/mask.png"), 404, "not_found")

    table = await gateway.get(done["links"]["frames_csv"])
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert table.headers["content-disposition"] == f'attachment; filename="{job["id"]}-frames.csv"'
    rows = list(csv.DictReader(io.StringIO(table.text)))
    frames = (await gateway.get(f"/v1/analyses/{job['id']}")).json()["result"]["frames"]
    assert [int(r["frame"]) for r in rows] == list(range(16))
    assert [r["plane"] for r in rows] == [f["plane"] for f in frames]
    assert [int(r["csa_px"]) for r in rows] == [f["csa_px"] for f in frames]
    assert [int(r["nerve_present"]) for r in rows] == [int(f["nerve_present"]) for f in frames]
    assert rows[5]["time_s"] == "0.2"  # frame 5 at 25 frames/s

    assert (await gateway.delete(f"/v1/analyses/{job['id']}")).status_code == 204
    assert_error(await gateway.get(f"/v1/analyses/{job['id']}"), 404, "not_found")
    assert_error(await gateway.get(f"/v1/analyses/{job['id']}/masks.npz"), 404, "not_found")
    assert_error(await gateway.delete(f"/v1/analyses/{job['id']}"), 404, "not_found")


async def test_list_filters_and_cursor_pagination(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    path = write_clip("png", clip.frames, files_dir)
    ids = [(await upload(gateway, path, wait=True)).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "created_after": start.isoformat(), "status": "succeeded"}
        if cursor:
            params["cursor"] = cursor
        page = (await gateway.get("/v1/analyses", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each exactly once
    plane = (await gateway.get(f"/v1/analyses/{ids[0]}")).json()["plane"]
    other = next(p for p in ("TW", "TF", "LW", "LF") if p != plane)
    same = (await gateway.get("/v1/analyses", params={"plane": plane, "created_after": start.isoformat()})).json()
    assert set(ids) <= {i["id"] for i in same["items"]}
    assert (await gateway.get("/v1/analyses", params={"plane": other, "created_after": start.isoformat()})).json()["items"] == []
    before = (await gateway.get("/v1/analyses", params={"created_before": start.isoformat()})).json()
    assert not set(ids) & {i["id"] for i in before["items"]}
    assert_error(await gateway.get("/v1/analyses", params={"cursor": "not-a-cursor!"}), 422, "validation_error")
    assert_error(await gateway.get("/v1/analyses", params={"plane": "XX"}), 422, "validation_error")
    assert_error(await gateway.get("/v1/analyses", params={"limit": 0}), 422, "validation_error")


async def test_health_metrics_docs(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    assert (await upload(gateway, write_clip("png", clip.frames, files_dir), wait=True)).status_code == 200
    assert (await gateway.get("/health/live")).json() == {"status": "live"}
    ready = await gateway.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    text = (await gateway.get("/metrics")).text
    assert 'ultramn_http_requests_total{method="GET",route="/health/ready",status="200"}' in text
    assert 'ultramn_stage_seconds_bucket{le="0.001",stage="inference"}' in text
    assert "ultramn_queue_depth 0.0" in text
    assert (await gateway.get("/docs")).status_code == 200
    spec = (await gateway.get("/openapi.json")).json()
    text = (await gateway.get("/metrics")).text
    assert 'route="/docs",status="200"' in text and 'route="/openapi.json",status="200"' in text  # not "unmatched"
    assert {"/v1/analyses", "/v1/analyses/{job_id}", "/v1/analyses/{job_id}/masks.npz", "/health/ready"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/analyses"]["post"]["requestBody"]["content"]
    assert [(p["name"], p["in"]) for p in spec["paths"]["/v1/analyses"]["post"]["parameters"]] == [("Idempotency-Key", "header")]

    def codes(path: str, method: str = "get") -> set[str]:
        return set(spec["paths"][path][method]["responses"])

    # each route documents the errors it can give: the key checks everywhere, 409 where results may not exist yet
    assert {"401", "403", "422"} <= codes("/v1/analyses") and {"401", "403", "422"} <= codes("/v1/batches")
    assert {"404", "409"} <= codes("/v1/analyses/{job_id}/masks.npz") and "409" in codes("/v1/analyses/{job_id}/frames/{index}/mask.png")
    assert {"413", "415", "429", "503"} <= codes("/v1/analyses", "post") and "413" not in codes("/v1/analyses/{job_id}")
    assert "409" not in codes("/v1/analyses/{job_id}/frames/{index}/image.png")  # the original frames exist from upload on
    assert_error(await gateway.get("/nope"), 404, "not_found")


async def test_the_served_weights_are_named_when_the_gateway_sees_the_model_repository(
    served_model: ServedModel, tmp_path: Path, clip: SynthClip
) -> None:
    """``/health/ready`` and every result name the checkpoint the served ONNX model was built from
    (``ultramn batch`` tells retrained weights under the same version by it); without a repository,
    or with one whose build record does not match, ``weights`` is unknown and analyses go on."""
    path = write_clip("png", clip.frames, tmp_path / "files")
    expected = file_sha256(served_model.checkpoint)
    cases = {"repository": (served_model.repository, expected), "none": (None, None), "no record": (tmp_path / "empty", None)}
    for name, (repository, weights) in cases.items():
        settings = make_settings(tmp_path / name, served_model.server.grpc_url, model_repository=repository)
        async with running_gateway(settings) as client:
            ready = (await client.get("/health/ready")).json()
            assert ready["status"] == "ready" and ready["weights"] == weights, name
            done = await upload(client, path, wait=True)
            assert done.status_code == 200, done.text
            model = done.json()["result"]["model"]
            assert model == {"name": ready["model"], "version": ready["version"]} | ({"weights": weights} if weights else {}), name


async def test_api_key_guards_data_routes_only(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, api_key="s3cret")
    path = write_clip("png", clip.frames, tmp_path / "files")
    async with running_gateway(settings) as client:
        assert_error(await upload(client, path), 401, "unauthorized")
        assert_error(await upload(client, path, headers={"X-API-Key": "wrong"}), 403, "forbidden")
        assert_error(await client.get("/v1/analyses"), 401, "unauthorized")
        assert_error(await client.get("/v1/analyses/abc", headers={"X-API-Key": "nope"}), 403, "forbidden")
        ok = await upload(client, path, wait=True, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200, ok.text
        assert (await client.get("/v1/analyses", headers={"X-API-Key": "s3cret"})).json()["items"][0]["id"] == ok.json()["id"]
        for open_route in ("/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"):
            assert (await client.get(open_route)).status_code == 200, open_route
