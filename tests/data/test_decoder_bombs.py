"""Small files that declare huge contents: refused before the contents are inflated (memory
measured with tracemalloc, which sees NumPy's and Pillow-through-NumPy allocations)."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ultramn.data.decoders import (
    CorruptFileError,
    DecodeLimits,
    LimitExceededError,
    decode,
    private_names,
    to_uint8,
)

MB = 1 << 20


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak traced allocation while ``fn`` runs (its exception, if any, is swallowed)."""
    tracemalloc.start()
    try:
        fn()
    except Exception:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def npz_bomb(path: Path, shape: tuple[int, ...]) -> Path:
    """An NPZ whose ``frames`` member inflates to ``prod(shape)`` zero bytes (written streaming)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    zeros = bytes(4 * MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("frames.npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        for _ in range(int(np.prod(shape)) // len(zeros)):
            f.write(zeros)
    return path


def test_an_npz_declaring_a_huge_array_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = npz_bomb(tmp_path / "bomb.npz", (16, 2048, 2048))  # 64 MB of zeros in ~64 kB
    limits = DecodeLimits(max_pixels=MB)
    with pytest.raises(LimitExceededError, match="too large"):
        decode(path, limits=limits)
    assert peak_bytes(lambda: decode(path, limits=limits)) < 4 * MB


def test_a_zip_of_frames_with_a_bomb_member_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "frames.zip"
    zeros = bytes(4 * MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("frame_0.png", "w", force_zip64=True) as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        for _ in range(16):
            f.write(zeros)  # 64 MB
    with pytest.raises(LimitExceededError, match="not a compressed image"):
        decode(path)
    assert peak_bytes(lambda: decode(path)) < 8 * MB


def test_a_multipage_tiff_stops_at_the_pixel_budget_not_after_every_page(tmp_path: Path) -> None:
    path = tmp_path / "pages.tiff"
    page = Image.new("L", (1024, 1024), 0)
    page.save(path, save_all=True, append_images=[page] * 15, compression="tiff_adobe_deflate")  # 16 MB of pixels
    limits = DecodeLimits(max_pixels=4 * MB)
    with pytest.raises(LimitExceededError, match="pixels in all"):
        decode(path, limits=limits)
    assert peak_bytes(lambda: decode(path, limits=limits)) < 10 * MB  # was: every page, then a stacked copy


def deflated(path: Path, ds: Any) -> Path:
    """``ds`` written with the Deflated Explicit VR Little Endian transfer syntax (pydicom's writer)."""
    import pydicom

    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_deflated_dicom_decodes_like_the_uncompressed_file(tmp_path: Path) -> None:
    import pydicom

    from tests.data.test_decoders import write_dicom_cine

    frames = (np.arange(5 * 48 * 64) % 251).astype(np.uint8).reshape(5, 48, 64)
    plain = write_dicom_cine(tmp_path / "cine.dcm", frames)
    packed = deflated(tmp_path / "deflated.dcm", pydicom.dcmread(plain))
    assert b"1.2.840.10008.1.2.1.99" in packed.read_bytes()[:4096]
    want, got = decode(plain), decode(packed)
    np.testing.assert_array_equal(got.frames, frames)
    assert (got.fps, got.pixel_spacing_xy_mm, got.format) == (want.fps, want.pixel_spacing_xy_mm, "dicom")


def test_a_deflated_dicom_bomb_stops_at_its_declared_size(tmp_path: Path) -> None:
    import pydicom

    from tests.data.test_decoders import write_dicom_cine

    ds = pydicom.dcmread(write_dicom_cine(tmp_path / "cine.dcm", np.zeros((1, 64, 64), np.uint8)))
    ds.NumberOfFrames = 1
    ds.PixelData = bytes(96 * MB)  # declares 64x64 pixels, inflates to 96 MB: a 100 kB file
    bomb = deflated(tmp_path / "bomb.dcm", ds)
    assert bomb.stat().st_size < MB
    with pytest.raises(LimitExceededError, match="more than its image header declares"):
        decode(bomb)
    assert peak_bytes(lambda: decode(bomb)) < 48 * MB  # was: refused; pydicom alone inflates it all


def test_a_deflated_dicom_declaring_a_clip_past_the_limits_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    import pydicom

    from tests.data.test_decoders import write_dicom_cine

    frames = np.zeros((256, 256, 256), np.uint8)  # 16 MB of pixels
    packed = deflated(tmp_path / "big.dcm", pydicom.dcmread(write_dicom_cine(tmp_path / "cine.dcm", frames)))
    limits = DecodeLimits(max_frames=8)
    with pytest.raises(LimitExceededError, match="256 frames exceed the limit of 8"):
        decode(packed, limits=limits)
    assert peak_bytes(lambda: decode(packed, limits=limits)) < frames.nbytes // 4  # one inflation step, not the clip


def test_a_corrupt_deflated_dicom_is_a_corrupt_file(tmp_path: Path) -> None:
    import pydicom

    from tests.data.test_decoders import write_dicom_cine

    packed = deflated(tmp_path / "d.dcm", pydicom.dcmread(write_dicom_cine(tmp_path / "c.dcm", np.ones((2, 32, 32), np.uint8))))
    data = bytearray(packed.read_bytes())
    data[-200:] = bytes(range(200))  # the deflate stream's end overwritten
    with pytest.raises(CorruptFileError):
        decode(bytes(data), filename="d.dcm")


def test_private_names_keep_member_names_out_of_messages(tmp_path: Path) -> None:
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i, size in enumerate([(32, 32), (32, 32), (40, 32)]):
            buf = io.BytesIO()
            Image.new("L", size, 60).save(buf, format="PNG")
            zf.writestr(f"Jane_Doe_MRN12345/frame_{i}.png", buf.getvalue())
    with pytest.raises(Exception, match="Jane_Doe") as shown:  # to the uploader: the member's name helps
        decode(path)
    with private_names(), pytest.raises(type(shown.value)) as stored:  # a message the gateway stores: positions only
        decode(path)
    assert "Jane_Doe" not in str(stored.value) and "member 3" in str(stored.value)


def test_sixteen_bit_frames_scale_a_frame_at_a_time() -> None:
    frames = (np.arange(8 * 512 * 512, dtype=np.uint32) % 4000).astype(np.uint16).reshape(8, 512, 512)
    out = to_uint8(frames)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    expected = np.rint((frames.astype(np.float64) - 0) * (255.0 / 3999)).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert peak_bytes(lambda: to_uint8(frames)) < 3 * frames.size  # was ~24 bytes per pixel in float64 copies


def png_zip(path: Path, n: int, size: tuple[int, int] = (32, 32)) -> Path:
    """A ZIP of ``n`` stored (uncompressed) PNG frames, each ``size`` (width, height)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray((np.arange(size[0] * size[1]) % 256).astype(np.uint8).reshape(size[1], size[0])).save(buf, "PNG")
            zf.writestr(f"frame_{i:03d}.png", buf.getvalue())
    return path


def test_a_zip_with_more_frame_images_than_frames_allowed_is_refused_by_its_directory(tmp_path: Path) -> None:
    path = png_zip(tmp_path / "frames.zip", 6)
    assert decode(path, limits=DecodeLimits(max_frames=6)).n_frames == 6
    with pytest.raises(LimitExceededError, match="6 frame images exceed the limit of 5 frames"):
        decode(path, limits=DecodeLimits(max_frames=5))


def test_the_gateway_settings_bound_a_zip_of_frames_by_the_clip_pixel_limit(tmp_path: Path) -> None:
    from gateway.core.config import Settings

    limits = Settings(max_clip_pixels=64 * 64 * 4, max_frames=50).decode_limits
    assert (limits.max_zip_bytes, limits.max_frames) == (8 * 64 * 64 * 4, 50)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # PNG cannot shrink noise
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "PNG")
        zf.writestr("frame_0.png", buf.getvalue())
        zf.writestr("frame_1.png", buf.getvalue() + bytes(9 * 64 * 64 * 4))  # trailing bytes: the sum is past the bound
    with pytest.raises(LimitExceededError, match="uncompressed size exceeds 131072 bytes"):
        decode(path, limits=limits)
