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
    DecodeLimits,
    LimitExceededError,
    UnsupportedFormatError,
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


def test_a_deflated_dicom_is_refused_with_a_reason(tmp_path: Path) -> None:
    from tests.data.test_decoders import write_dicom_cine

    path = write_dicom_cine(tmp_path / "cine.dcm", np.zeros((2, 16, 16), np.uint8))
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.1.99", 1)
    assert b"1.2.840.10008.1.2.1.99" in data[:4096]
    with pytest.raises(UnsupportedFormatError, match="deflated DICOM"):
        decode(data, filename="cine.dcm")


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
