"""The overlay video: the renderer on known masks, and ``GET /v1/analyses/{id}/overlay.mp4``
through the real app and Triton server, decoded back with PyAV."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.store.files import FileStore, overlay_rgb
from gateway.store.overlay_video import DEFAULT_FPS, frame_captions, write_overlay_mp4
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload, write_clip
from tests.serving.fixtures import EmbeddedTriton

pytestmark = pytest.mark.anyio


def read_video(data: bytes | Path) -> tuple[np.ndarray, float]:
    """``uint8 [N,H,W,3]`` RGB frames and the stream's frame rate."""
    with av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        rate = float(stream.average_rate or 0)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, rate


def disc_clip(n: int = 6, h: int = 61, w: int = 75) -> tuple[np.ndarray, np.ndarray]:
    """Grey frames with a darker disc moving right, and the disc as 0/1 masks (odd size on purpose)."""
    yy, xx = np.mgrid[:h, :w]
    frames = np.full((n, h, w), 140, np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        disc = (yy - 38) ** 2 + (xx - 20 - 4 * i) ** 2 <= 9**2
        frames[i][disc] = 60
        masks[i][disc] = 1
    return frames, masks


def test_the_video_shows_the_nerve_tinted_in_every_frame_at_the_clip_rate(tmp_path: Path) -> None:
    frames, masks = disc_clip()
    video = write_overlay_mp4(frames, masks, tmp_path / "o.mp4", fps=12.5)
    assert (video.n_frames, video.width, video.height, video.fps) == (6, 76, 62, 12.5)  # odd sides padded to even
    rgb, rate = read_video(tmp_path / "o.mp4")
    assert rgb.shape == (6, 62, 76, 3) and rate == pytest.approx(12.5)
    for i in range(6):
        inside = np.zeros(rgb.shape[1:3], bool)
        inside[:61, :75] = masks[i] > 0
        core = inside & np.roll(inside, 3, 0) & np.roll(inside, -3, 0) & np.roll(inside, 3, 1) & np.roll(inside, -3, 1)
        tint = rgb[i][..., 0].astype(int) - rgb[i][..., 2].astype(int)  # red minus blue: yellow tint
        assert tint[core].mean() > 40  # the nerve is tinted where this frame's mask is ...
        far = ~inside & np.roll(~inside, 6, 1) & np.roll(~inside, -6, 1)
        far[:20] = False  # (not under the caption)
        assert np.abs(tint[far]).mean() < 6  # ... and the rest stays grey
        np.testing.assert_allclose(rgb[i][:61, :75][far[:61, :75]].mean(), 140, atol=4)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_captions_say_frame_plane_and_area_and_a_missing_rate_plays_at_the_default(tmp_path: Path) -> None:
    result = {
        "frames": [
            {"plane": "TW", "nerve_present": True, "csa_mm2": 8.456, "csa_px": 845},
            {"plane": "TW", "nerve_present": True, "csa_mm2": None, "csa_px": 845.0},
            {"plane": "LF", "nerve_present": False, "csa_mm2": None, "csa_px": 0},
        ]
    }
    assert frame_captions(result, 4) == ["1/4  TW  CSA 8.46 mm^2", "2/4  TW  CSA 845 px^2", "3/4  LF  no nerve", "4/4"]
    band = {"frames": [{"plane": "LW", "nerve_present": True, "csa_mm2": 30.0}]}
    assert frame_captions(band, 1) == ["1/1  LW  area 30.00 mm^2"]  # a longitudinal band is not a cross-section
    assert frame_captions(None, 2) == ["1/2", "2/2"]
    frames, masks = disc_clip(n=3)
    plain = write_overlay_mp4(frames, masks, tmp_path / "plain.mp4", fps=None)
    assert plain.fps == DEFAULT_FPS
    write_overlay_mp4(frames, masks, tmp_path / "captioned.mp4", fps=None, captions=frame_captions(result, 3))
    (a, rate), (b, _) = read_video(tmp_path / "plain.mp4"), read_video(tmp_path / "captioned.mp4")
    assert rate == pytest.approx(DEFAULT_FPS)
    corner = (slice(0, 8), slice(0, 30))
    assert b[0][corner].mean() < a[0][corner].mean() - 40  # the caption's dark box at the top left
    assert np.abs(a[0][30:].astype(int) - b[0][30:].astype(int)).mean() < 1  # nothing else changes (but codec noise)
    with pytest.raises(ValueError, match="captions"):
        write_overlay_mp4(frames, masks, tmp_path / "x.mp4", captions=["one"])
    with pytest.raises(ValueError, match="shape"):
        write_overlay_mp4(frames, masks[:2], tmp_path / "x.mp4")


async def test_overlay_mp4_route(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    path = write_clip("npz", clip.frames, tmp_path / "files")
    data = tmp_path / "data"
    async with running_gateway(make_settings(data, triton_server.grpc_url)) as client:
        job = (await upload(client, path, wait=True)).json()
        assert job["status"] == "succeeded" and job["links"]["overlay_mp4"] == f"/v1/analyses/{job['id']}/overlay.mp4"
        r = await client.get(job["links"]["overlay_mp4"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "video/mp4"
        assert r.headers["content-disposition"] == f'attachment; filename="{job["id"]}-overlay.mp4"'
        rgb, rate = read_video(r.content)
        assert rgb.shape == (16, 128, 160, 3) and rate == pytest.approx(25.0)  # the clip's frames, size and rate
        with np.load(io.BytesIO((await client.get(job["links"]["masks_npz"])).content)) as npz:
            masks = npz["masks"]
        below_caption = slice(24, None)
        for i in (0, 7, 15):  # each frame is the overlay PNG's picture (H.264 at crf 18: within a few levels)
            expected = overlay_rgb(clip.frames[i], masks[i]).astype(int)
            assert np.abs(rgb[i][below_caption].astype(int) - expected[below_caption]).mean() < 3

        files = FileStore(data)
        stored = files.overlay_video_path(job["id"])
        assert stored.read_bytes() == r.content  # kept, and the next request gets the same file
        assert (await client.get(job["links"]["overlay_mp4"])).content == r.content
        files.save_masks(job["id"], masks, np.zeros((16, 4), np.float32), (0, 0, 160, 128))  # masks written again
        assert not stored.exists()  # the old video does not outlive its masks
        assert (await client.get(job["links"]["overlay_mp4"])).status_code == 200 and stored.exists()

        assert (await client.delete(f"/v1/analyses/{job['id']}")).status_code == 204
        assert not stored.exists()
        assert_error(await client.get(job["links"]["overlay_mp4"]), 404, "not_found")

    async with running_gateway(make_settings(tmp_path / "queued", triton_server.grpc_url, workers=0)) as client:
        queued = (await upload(client, path)).json()
        assert_error(await client.get(f"/v1/analyses/{queued['id']}/overlay.mp4"), 409, "not_ready")


async def test_an_unreadable_upload_gives_404_not_a_500(triton_server: EmbeddedTriton, tmp_path: Path, clip: SynthClip) -> None:
    path = write_clip("npz", clip.frames, tmp_path / "files")
    data = tmp_path / "data"
    async with running_gateway(make_settings(data, triton_server.grpc_url, frame_cache_bytes=0)) as client:
        job = (await upload(client, path, wait=True)).json()
        upload_file = next((data / "uploads").glob(f"{job['id']}.*"))
        upload_file.write_bytes(b"\x93NUMPY broken")
        assert_error(await client.get(job["links"]["overlay_mp4"]), 404, "not_found")
        upload_file.unlink()
        assert_error(await client.get(job["links"]["overlay_mp4"]), 404, "not_found")
        assert not FileStore(data).overlay_video_path(job["id"]).exists()


def test_the_videos_temporary_file_is_a_leftover_at_start_up(tmp_path: Path) -> None:
    files = FileStore(tmp_path)
    (files.overlays / ".abc.mp4.tmp.mp4").write_bytes(b"half")
    (files.overlays / "abc.mp4").write_bytes(b"whole")
    assert files.remove_leftovers() == 1
    assert [p.name for p in files.overlays.iterdir()] == ["abc.mp4"]
