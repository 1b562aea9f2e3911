"""Every input format end to end through the real app and the real Triton server."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import upload, write_clip
from ultramn.contract import PLANES

pytestmark = pytest.mark.anyio

FRAME_KEYS = {
    "index",
    "plane_probs",
    "plane",
    "confidence",
    "nerve_present",
    "csa_px",
    "csa_mm2",
    "centroid",
    "bbox",
    "perimeter_px",
    "circularity",
    "flattening_ratio",
    "contour",
}


@pytest.mark.parametrize("fmt", ["mp4", "avi", "dicom", "npy", "npz", "tiff", "gif", "png", "zip"])
async def test_format_end_to_end(fmt: str, gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    path = write_clip(fmt, clip.frames, files_dir, spacing_mm=clip.spacing_mm)
    r = await upload(gateway, path, wait=True)
    assert r.status_code == 200, r.text
    assert r.headers["location"] == f"/v1/analyses/{r.json()['id']}"
    body = r.json()
    assert body["status"] == "succeeded"
    res = body["result"]
    n = 1 if fmt == "png" else clip.frames.shape[0]
    assert res["n_frames"] == n and len(res["frames"]) == n
    assert res["frame_size"] == {"width": 160, "height": 128}
    assert res["plane"] in PLANES and 0 <= res["plane_confidence"] <= 1
    assert set(res["timings_ms"]) >= {"decode", "roi", "preprocess", "inference", "stitch", "postprocess", "total"}
    assert res["model"]["name"] == "ultramn" and res["model"]["version"] == "1"
    assert res["analysis"] == {
        "window_frames": 8,
        "stride": 4,
        "blend": "triangular",
        "temporal_filter": 5,
        "temporal_min_similarity": 0.9,
        "mask_threshold": 0.5,
    }
    assert body["progress"]["windows_done"] == body["progress"]["windows_total"] == (1 if fmt == "png" else 3)
    for f in res["frames"]:
        assert set(f) >= FRAME_KEYS
        assert abs(sum(f["plane_probs"].values()) - 1) < 1e-3
        assert f["plane"] == max(f["plane_probs"], key=f["plane_probs"].get)
    if fmt == "dicom":
        assert res["spacing_source"] == "file"
        assert res["pixel_spacing_mm"]["dx"] == pytest.approx(clip.spacing_mm, rel=1e-3)
        assert res["fps"] == pytest.approx(25.0)
    elif fmt in ("mp4", "avi", "npz", "gif"):
        assert res["fps"] == pytest.approx(25.0)
    if fmt != "dicom":
        assert res["pixel_spacing_mm"] is None and all(f["csa_mm2"] is None for f in res["frames"])
    # masks in original geometry, consistent with the per-frame areas
    npz = await gateway.get(f"/v1/analyses/{body['id']}/masks.npz")
    assert npz.status_code == 200
    with np.load(io.BytesIO(npz.content)) as data:
        masks, probs = data["masks"], data["plane_probs"]
    assert masks.shape == (n, 128, 160) and masks.dtype == np.uint8 and probs.shape == (n, 4)
    assert [int(m.sum()) for m in masks] == [
        f["csa_px"] if f["nerve_present"] else int(masks[i].sum()) for i, f in enumerate(res["frames"])
    ]


async def test_request_spacing_overrides_and_gives_mm(gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path) -> None:
    path = write_clip("npy", clip.frames, files_dir)
    r = await upload(gateway, path, wait=True, pixel_spacing_mm=0.1, stride=8)
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["spacing_source"] == "request" and res["pixel_spacing_mm"] == {"dy": 0.1, "dx": 0.1}
    assert r.json()["progress"]["windows_total"] == 2  # starts 0 and 8 with stride 8
    assert res["analysis"]["stride"] == 8
    for f in res["frames"]:
        assert f["csa_mm2"] == pytest.approx(f["csa_px"] * 0.01, rel=1e-6)


async def test_the_files_spacing_warnings_go_when_the_request_gives_the_spacing(
    gateway: httpx.AsyncClient, clip: SynthClip, files_dir: Path
) -> None:
    from tests.data.test_decoders import write_dicom_cine

    files_dir.mkdir(parents=True, exist_ok=True)
    anisotropic = write_dicom_cine(files_dir / "aniso.dcm", clip.frames[:4], region_cm=(0.008, 0.012))
    bare = (await upload(gateway, anisotropic, wait=True)).json()["result"]
    assert any(w.startswith("anisotropic pixels") for w in bare["warnings"]) and bare["spacing_source"] == "file"
    given = (await upload(gateway, anisotropic, wait=True, pixel_spacing_mm=0.1)).json()["result"]
    assert given["spacing_source"] == "request"
    assert not any("pixel" in w for w in given["warnings"]), given["warnings"]  # was: the file's 0.08 x 0.12 mm, though unused
