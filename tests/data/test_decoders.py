"""Decoders on real files written here: MP4/AVI (PyAV), DICOM (pydicom), TIFF, ZIP, NPY/NPZ, images.

The writer helpers are reused by test_importers.py.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from ultramn.data.decoders import (
    CorruptFileError,
    DecodeError,
    DecodeLimits,
    FormatMismatchError,
    LimitExceededError,
    UnsupportedFormatError,
    decode,
    gif_fps,
    natural_key,
    sniff_format,
)

T, H, W = 6, 48, 64


def moving_square(n: int = T, h: int = H, w: int = W) -> np.ndarray:
    """``uint8 [n,h,w]``: a bright square moving right on a grey gradient (codec-friendly)."""
    frames = np.tile(np.linspace(30, 120, w, dtype=np.float32), (n, h, 1))
    for i in range(n):
        frames[i, 12:28, 8 + 4 * i : 24 + 4 * i] = 230
    return frames.astype(np.uint8)


def square_masks(n: int = T, h: int = H, w: int = W) -> np.ndarray:
    """The square of :func:`moving_square` as 0/1 masks ``uint8 [n,h,w]``."""
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        masks[i, 12:28, 8 + 4 * i : 24 + 4 * i] = 1
    return masks


def write_video(path: Path, frames: np.ndarray, codec: str, fps: int = 25, colour: bool = True) -> Path:
    """Encode ``uint8 [N,H,W]`` frames with PyAV (as RGB with a colour tint when ``colour``)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in frames:
            if colour:
                rgb = np.stack([frame, frame, frame], axis=-1)
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            else:
                vf = av.VideoFrame.from_ndarray(frame, format="gray")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _base_dicom(frames: np.ndarray, patient_id: str = "MRN-0042", name: str = "Doe^Jane") -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.tobytes()
    return ds


def us_region(delta_x_cm: float, delta_y_cm: float, w: int = W, h: int = H) -> Dataset:
    """One ``SequenceOfUltrasoundRegions`` item in centimetres (unit code 3)."""
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = w - 1, h - 1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = delta_x_cm
    region.PhysicalDeltaY = delta_y_cm
    return region


def write_dicom_cine(
    path: Path,
    frames: np.ndarray,
    *,
    patient_id: str = "MRN-0042",
    name: str = "Doe^Jane",
    region_cm: tuple[float, float] | None = (0.008, 0.008),
    cine_rate: float | None = 30.0,
    laterality: str | None = None,
) -> Path:
    """An uncompressed multi-frame ultrasound DICOM with regions in cm and a cine rate."""
    ds = _base_dicom(frames, patient_id, name)
    if region_cm is not None:
        ds.SequenceOfUltrasoundRegions = [us_region(*region_cm, w=frames.shape[2], h=frames.shape[1])]
    if cine_rate is not None:
        ds.CineRate = cine_rate
    if laterality is not None:
        ds.ImageLaterality = laterality
    ds.save_as(path, enforce_file_format=True)
    return path


def test_sniff_by_magic_bytes_and_catch_lying_names(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.fromarray(moving_square()[0]).save(png, format="PNG")
    data = png.getvalue()
    assert sniff_format(data[:512], "x.png") == "png"
    assert sniff_format(data[:512], None) == "png"
    assert sniff_format(data[:512], "noext") == "png"
    with pytest.raises(FormatMismatchError):
        sniff_format(data[:512], "clip.mp4")
    mp4 = write_video(tmp_path / "a.mp4", moving_square(), "libx264").read_bytes()
    assert sniff_format(mp4[:512], "a.mp4") == "video"
    assert sniff_format(mp4[:512], "a.mov") == "video"
    with pytest.raises(FormatMismatchError):
        sniff_format(mp4[:512], "a.dcm")
    with pytest.raises(UnsupportedFormatError):
        sniff_format(b"hello, this is text" * 10, "notes.txt")
    with pytest.raises(CorruptFileError):
        sniff_format(b"", "empty.png")


def test_mp4_h264_path_and_bytes(tmp_path: Path) -> None:
    src = moving_square()
    path = write_video(tmp_path / "clip.mp4", src, "libx264", fps=30)
    for clip in (decode(path), decode(path.read_bytes(), filename="upload.mp4")):
        assert clip.format == "video"
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == (T, H, W)
        assert clip.fps == pytest.approx(30.0)
        assert clip.pixel_spacing_mm is None
        # colour -> grey; the codec is near-lossless: the moving square is where it was
        assert np.abs(clip.frames.astype(int) - src.astype(int)).mean() < 4.0
        assert clip.frames[3, 20, 8 + 12 + 4] > 200


def test_avi_mpeg4(tmp_path: Path) -> None:
    src = moving_square()
    clip = decode(write_video(tmp_path / "clip.avi", src, "mpeg4", fps=20, colour=False))
    assert clip.format == "video" and clip.frames.shape == (T, H, W)
    assert clip.fps == pytest.approx(20.0)
    assert np.abs(clip.frames.astype(int) - src.astype(int)).mean() < 12.0


def test_truncated_mp4_is_corrupt(tmp_path: Path) -> None:
    data = write_video(tmp_path / "clip.mp4", moving_square(), "libx264").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        decode(cut)
    with pytest.raises(CorruptFileError):
        decode(data[:64], filename="cut.mp4")


def test_png_named_mp4_is_refused_as_lying(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    Image.fromarray(moving_square()[0]).save(path, format="PNG")
    with pytest.raises(FormatMismatchError) as info:
        decode(path)
    assert isinstance(info.value, UnsupportedFormatError) and isinstance(info.value, ValueError)


def test_dicom_cine_regions_in_cm_become_mm(tmp_path: Path) -> None:
    src = moving_square()
    path = write_dicom_cine(tmp_path / "cine.dcm", src, region_cm=(0.008, 0.0084), cine_rate=None)
    ds = pydicom.dcmread(path)
    ds.FrameTime = 40.0  # ms -> 25 fps
    ds.save_as(path)
    clip = decode(path)
    assert clip.format == "dicom"
    np.testing.assert_array_equal(clip.frames, src)
    assert clip.pixel_spacing_xy_mm == pytest.approx((0.08, 0.084))
    assert clip.pixel_spacing_mm == pytest.approx(0.082)
    assert clip.fps == pytest.approx(25.0)


def test_dicom_pixel_spacing_and_cine_rate(tmp_path: Path) -> None:
    src = moving_square(n=1)
    ds = _base_dicom(src)
    del ds.NumberOfFrames
    ds.PixelSpacing = [0.1, 0.12]  # row, column spacing in mm
    ds.RecommendedDisplayFrameRate = 15
    path = tmp_path / "single"  # no extension: sniffed from the DICM marker
    ds.save_as(path, enforce_file_format=True)
    clip = decode(path)
    assert clip.frames.shape == (1, H, W)
    assert clip.pixel_spacing_xy_mm == pytest.approx((0.12, 0.1))
    assert clip.pixel_spacing_mm == pytest.approx(0.11)
    assert clip.fps == pytest.approx(15.0)


def test_dicom_rgb_and_monochrome1(tmp_path: Path) -> None:
    src = moving_square(n=2)
    rgb = np.stack([src, src, src], axis=-1)
    rgb[..., 0] = np.clip(src.astype(int) + 20, 0, 255)  # tinted: grey = BT.601 luma
    ds = _base_dicom(src)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    clip = decode(tmp_path / "rgb.dcm")
    expected = np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    assert np.abs(clip.frames.astype(int) - expected.astype(int)).max() <= 1

    mono1 = _base_dicom(src)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    mono1.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(decode(tmp_path / "m1.dcm").frames, 255 - src)


def test_dicom_jpeg_baseline_and_rle(tmp_path: Path) -> None:
    src = moving_square()
    ds = _base_dicom(src)
    jpegs = []
    for frame in src:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=95)
        jpegs.append(buf.getvalue())
    ds.PixelData = encapsulate(jpegs)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    clip = decode(tmp_path / "jpeg.dcm")
    assert clip.frames.shape == (T, H, W)
    assert np.abs(clip.frames.astype(int) - src.astype(int)).mean() < 3.0

    rle = _base_dicom(src)
    rle.compress(RLELossless)
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(decode(tmp_path / "rle.dcm").frames, src)


def test_dicom_without_pixel_data_is_corrupt(tmp_path: Path) -> None:
    ds = _base_dicom(moving_square())
    del ds.PixelData
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CorruptFileError, match="without pixel data"):
        decode(path)
    with pytest.raises(CorruptFileError):
        decode(path.read_bytes(), filename="report.dcm")


def test_dicom_zero_frames_is_corrupt(tmp_path: Path) -> None:
    ds = _base_dicom(moving_square())
    ds.NumberOfFrames = 0
    ds.save_as(tmp_path / "zero.dcm", enforce_file_format=True)
    with pytest.raises(CorruptFileError):
        decode(tmp_path / "zero.dcm")


def test_absurd_dimensions_and_frame_counts(tmp_path: Path) -> None:
    ds = _base_dicom(moving_square(n=1))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60_000, 60_000, 1000  # header lies; data is tiny
    ds.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    with pytest.raises(LimitExceededError):
        decode(tmp_path / "huge.dcm")
    np.save(tmp_path / "tall.npy", np.zeros((10, 5000, 16), np.uint8))
    with pytest.raises(LimitExceededError):
        decode(tmp_path / "tall.npy")
    video = write_video(tmp_path / "v.mp4", moving_square(), "libx264")
    with pytest.raises(LimitExceededError):
        decode(video, limits=DecodeLimits(max_frames=3))
    assert issubclass(LimitExceededError, DecodeError)


def test_npy_npz_variants(tmp_path: Path) -> None:
    src = moving_square()
    np.save(tmp_path / "clip.npy", src)
    np.testing.assert_array_equal(decode(tmp_path / "clip.npy").frames, src)
    np.save(tmp_path / "still.npy", src[0])
    assert decode(tmp_path / "still.npy").frames.shape == (1, H, W)
    np.save(tmp_path / "float.npy", src.astype(np.float32) / 255.0)
    assert np.abs(decode(tmp_path / "float.npy").frames.astype(int) - src).max() <= 1
    np.savez(tmp_path / "clip.npz", frames=src, fps=np.float64(12.5), pixel_spacing_mm=np.float64(0.09))
    clip = decode(tmp_path / "clip.npz")
    np.testing.assert_array_equal(clip.frames, src)
    assert clip.fps == pytest.approx(12.5) and clip.pixel_spacing_mm == pytest.approx(0.09)
    np.savez(tmp_path / "two.npz", a=src, b=src)
    with pytest.raises(UnsupportedFormatError):
        decode(tmp_path / "two.npz")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(CorruptFileError):
        decode(tmp_path / "bad.npy")


def test_npz_metadata_that_is_not_one_positive_number_is_ignored_with_a_warning(tmp_path: Path) -> None:
    src = moving_square()
    np.savez(tmp_path / "meta.npz", frames=src, fps=np.array([25.0, 30.0]), pixel_spacing_mm=np.float64(-1.0))
    clip = decode(tmp_path / "meta.npz")
    np.testing.assert_array_equal(clip.frames, src)
    assert clip.fps is None and clip.pixel_spacing_mm is None
    assert any("'fps'" in w and "shape (2,)" in w for w in clip.warnings)
    assert any("'pixel_spacing_mm'" in w and "-1.0" in w for w in clip.warnings)
    np.savez(tmp_path / "text.npz", frames=src, fps=np.array("fast"), pixel_spacing_mm=np.float64(0.1))
    clip = decode(tmp_path / "text.npz")
    assert clip.fps is None and clip.pixel_spacing_mm == pytest.approx(0.1)
    assert [w for w in clip.warnings if "'fps'" in w and "'fast'" in w]
    np.savez(tmp_path / "microns.npz", frames=src, pixel_spacing_mm=np.float64(80.0))  # um taken for mm
    clip = decode(tmp_path / "microns.npz")
    assert clip.pixel_spacing_mm is None
    assert [w for w in clip.warnings if "'pixel_spacing_mm' is not one value, a pixel size in mm from 0.001 to 10 (80.0)" in w]
    region_in_mm = write_dicom_cine(tmp_path / "mm.dcm", src, region_cm=(8.0, 8.0))  # 8 cm a pixel: mm written as cm
    clip = decode(region_in_mm)
    assert clip.pixel_spacing_mm is None and clip.fps == pytest.approx(30.0)
    assert [w for w in clip.warnings if w.startswith("ultrasound region spacing (8 x 8 cm) is not a pixel size in mm")]


def test_float_arrays_with_nan_or_inf(tmp_path: Path) -> None:
    src = moving_square().astype(np.float32) * 4.0  # 0..1020: min-max rescaled
    holes = src.copy()
    holes[:, 0, :4] = np.nan
    holes[:, 1, :4] = np.inf
    holes[:, 2, :4] = -np.inf
    np.save(tmp_path / "holes.npy", holes)
    clip = decode(tmp_path / "holes.npy")
    lo, hi = np.nanmin(holes[np.isfinite(holes)]), np.nanmax(holes[np.isfinite(holes)])
    expected = np.rint((src.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    np.testing.assert_array_equal(clip.frames[:, 3:], expected[:, 3:])  # finite pixels: min-max over the finite ones
    assert clip.frames.max() == 255  # an infinite pixel did not flatten the scale
    assert (clip.frames[:, :3, :4] == 0).all()  # non-finite pixels: the lowest finite level
    assert [w for w in clip.warnings if f"{3 * 4 * T} of {holes.size}" in w and "NaN or infinite" in w]
    np.save(tmp_path / "void.npy", np.full((2, H, W), np.nan, np.float32))
    with pytest.raises(CorruptFileError, match="every pixel is NaN or infinite"):
        decode(tmp_path / "void.npy")


def test_malformed_dicom_timing_and_spacing_are_skipped(tmp_path: Path) -> None:
    """Bad optional header values never stop a decode: the next source of fps is used, spacing is dropped."""
    src = moving_square()
    ds = _base_dicom(src)
    ds.FrameTime = "33.3"
    ds.RecommendedDisplayFrameRate = 20
    ds.PixelSpacing = "0.25"  # one value where DICOM wants two
    path = tmp_path / "odd.dcm"
    ds.save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    assert raw.count(b"33.3") == 1
    path.write_bytes(raw.replace(b"33.3", b"fast"))  # a FrameTime that is not a number
    clip = decode(path)
    np.testing.assert_array_equal(clip.frames, src)
    assert clip.fps == pytest.approx(20.0)
    assert clip.pixel_spacing_mm is None
    assert [w for w in clip.warnings if w.startswith("PixelSpacing in the header (0.25) is not two values of a pixel size in mm")]


def test_multipage_tiff_and_still_images(tmp_path: Path) -> None:
    src = moving_square()
    pages = [Image.fromarray(f) for f in src]
    pages[0].save(tmp_path / "clip.tif", save_all=True, append_images=pages[1:])
    clip = decode(tmp_path / "clip.tif")
    assert clip.format == "tiff"
    np.testing.assert_array_equal(clip.frames, src)
    for ext, fmt in ((".png", "PNG"), (".bmp", "BMP")):
        Image.fromarray(np.stack([src[0]] * 3, axis=-1)).save(tmp_path / f"rgb{ext}", format=fmt)
        still = decode(tmp_path / f"rgb{ext}")
        np.testing.assert_array_equal(still.frames, src[:1])
    Image.fromarray(src[0]).save(tmp_path / "g.jpg", quality=95)
    assert decode(tmp_path / "g.jpg").frames.shape == (1, H, W)
    truncated = (tmp_path / "rgb.png").read_bytes()
    with pytest.raises(CorruptFileError):
        decode(truncated[:100], filename="cut.png")


def write_gif(path: Path, frames: np.ndarray, durations_ms: int | list[int] = 40) -> Path:
    """Grey ``uint8 [N,H,W]`` frames as an animated GIF (lossless: 256 grey levels fit its palette).

    Pillow stores frames after the first as the rectangle that changed, so decoding must
    composite them onto the earlier picture.
    """
    pages = [Image.fromarray(f) for f in frames]
    pages[0].save(path, save_all=True, append_images=pages[1:], duration=durations_ms, loop=0)
    return path


def test_an_animated_gif_is_a_clip_with_its_frame_rate(tmp_path: Path) -> None:
    src = moving_square(n=8)
    path = write_gif(tmp_path / "loop.gif", src, durations_ms=40)
    for clip in (decode(path), decode(path.read_bytes(), filename="upload.gif"), decode(path.read_bytes())):
        assert clip.format == "gif"
        np.testing.assert_array_equal(clip.frames, src)  # every frame whole, not only the changed rectangle
        assert clip.fps == pytest.approx(25.0)
    assert sniff_format(path.read_bytes()[:512], "loop.gif") == "gif"
    with pytest.raises(FormatMismatchError):
        decode(path.read_bytes(), filename="loop.mp4")
    still = decode(write_gif(tmp_path / "still.gif", src[:1]))
    assert still.frames.shape == (1, H, W) and still.fps is None


def test_a_colour_gif_becomes_grey_luma(tmp_path: Path) -> None:
    rgb = np.zeros((3, H, W, 3), np.uint8)
    rgb[..., 0] = 200  # red: luma 0.299 * 200 = 60
    rgb[1, :, :, 1] = 100  # + green: 60 + 0.587 * 100 = 118.7
    pages = [Image.fromarray(f) for f in rgb]
    pages[0].save(tmp_path / "c.gif", save_all=True, append_images=pages[1:], duration=50)
    clip = decode(tmp_path / "c.gif")
    assert clip.frames.shape == (3, H, W) and clip.fps == pytest.approx(20.0)
    np.testing.assert_allclose([int(f[0, 0]) for f in clip.frames], [60, 118.7, 60], atol=1)  # Pillow's integer luma


def test_gif_frame_rate_follows_what_a_browser_shows() -> None:
    assert gif_fps([40] * 10) == pytest.approx(25.0)
    assert gif_fps([40, 40, 40, 1000]) == pytest.approx(25.0)  # a long pause on the last frame: the median
    assert gif_fps([0, 0, 0]) is None  # the file gives no delay: no frame rate
    assert gif_fps([10, 10, 10]) == pytest.approx(10.0)  # browsers show delays of 10 ms or less for 100 ms
    assert gif_fps([20, 20]) == pytest.approx(50.0)
    assert gif_fps([40]) is None  # a still


def test_a_cut_gif_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    data = write_gif(tmp_path / "loop.gif", moving_square(n=8)).read_bytes()
    for cut in (data[:12], data[: len(data) // 2]):
        try:
            clip = decode(cut, filename="cut.gif")
        except CorruptFileError as exc:
            assert "cut.gif" in str(exc)
        else:  # Pillow may stop at the last whole frame; what it returns is then a true prefix
            assert 1 <= clip.n_frames < 8
            np.testing.assert_array_equal(clip.frames, moving_square(n=8)[: clip.n_frames])


def test_zip_of_frames_is_sorted_naturally(tmp_path: Path) -> None:
    src = moving_square(n=12)
    path = tmp_path / "frames.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in reversed(range(12)):  # stored out of order; frame10 must follow frame9
            buf = io.BytesIO()
            Image.fromarray(src[i]).save(buf, format="PNG")
            zf.writestr(f"clip/frame{i}.png", buf.getvalue())
        zf.writestr("__MACOSX/clip/._frame1.png", b"junk")
    clip = decode(path)
    assert clip.format == "zip"
    np.testing.assert_array_equal(clip.frames, src)
    assert sorted(["f10", "f9", "f1"], key=natural_key) == ["f1", "f9", "f10"]
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as zf:
        zf.writestr("a.txt", b"not an image at all, really not" * 20)
    with pytest.raises(UnsupportedFormatError):
        decode(tmp_path / "mixed.zip")


def test_tiff_pages_of_differing_size_are_corrupt_not_a_crash(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.zeros((60, 80), np.uint8)), Image.fromarray(np.zeros((30, 40), np.uint8))]
    pages[0].save(tmp_path / "mixed.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(CorruptFileError, match=r"pages differ in size \(page 2 is 40x30, page 1 is 80x60\)"):
        decode(tmp_path / "mixed.tif")


def test_16_bit_pages_are_scaled_once_over_the_clip_so_a_fade_survives(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 1, W), (H, 1))
    fade = np.stack([np.rint(ramp * 4095 * (1 - 0.2 * i)).astype(np.uint16) for i in range(4)])
    pages = [Image.fromarray(f) for f in fade]
    pages[0].save(tmp_path / "fade.tif", save_all=True, append_images=pages[1:])
    with zipfile.ZipFile(tmp_path / "fade.zip", "w") as zf:
        for i, page in enumerate(pages):
            buf = io.BytesIO()
            page.save(buf, format="PNG")
            zf.writestr(f"f{i}.png", buf.getvalue())
    for name in ("fade.tif", "fade.zip"):
        frames = decode(tmp_path / name).frames
        assert frames.reshape(4, -1).max(axis=1).tolist() == [255, 204, 153, 102], name


def test_an_exif_orientation_is_applied_to_a_still(tmp_path: Path) -> None:
    img = np.zeros((H, W), np.uint8)
    img[:8, :16] = 255  # a bright block at the top left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    frames = decode(tmp_path / "phone.jpg").frames
    assert frames.shape == (1, W, H)
    assert frames[0, :16, -8:].mean() > 200 and frames[0, -16:, :8].mean() < 50  # now at the top right


def test_a_video_display_rotation_is_applied(tmp_path: Path) -> None:
    src = moving_square()
    data = write_video(tmp_path / "clip.mp4", src, "libx264").read_bytes()
    # the track header's display matrix: identity -> a quarter turn (what `ffmpeg -metadata:s:v rotate=90` writes)
    identity = b"".join(v.to_bytes(4, "big", signed=True) for v in (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000))
    turned = b"".join(v.to_bytes(4, "big", signed=True) for v in (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000))
    at = data.index(identity, data.index(b"tkhd"))
    rotated = data[:at] + turned + data[at + len(identity) :]
    clip = decode(rotated, filename="rotated.mp4")
    assert clip.frames.shape == (T, W, H)
    assert np.abs(clip.frames.astype(int) - np.rot90(src, 1, axes=(1, 2)).astype(int)).mean() < 4.0


@pytest.mark.parametrize(("name", "codec"), [("clip.avi", "mpeg4"), ("clip.mkv", "libx264"), ("clip.webm", "libvpx-vp9")])
def test_a_cut_video_that_still_decodes_warns_about_missing_frames(tmp_path: Path, name: str, codec: str) -> None:
    """AVI declares a frame count; Matroska/WebM only a DURATION tag (read as duration x rate)."""
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (40, H, W), dtype=np.uint8)  # incompressible: the bytes spread over all frames
    data = write_video(tmp_path / name, noisy, codec, colour=False).read_bytes()
    whole = decode(data, filename=name)
    assert whole.n_frames == 40 and not any("declares" in w for w in whole.warnings)
    cut = decode(data[: int(len(data) * 0.7)], filename=f"cut{Path(name).suffix}")
    assert 0 < cut.n_frames < 40
    assert any(f"only {cut.n_frames} of the 40 frames the container declares" in w for w in cut.warnings)


def _grey16_dicom(values: np.ndarray, bits_stored: int) -> Dataset:
    ds = _base_dicom(values.astype(np.uint16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelData = values.astype(np.uint16).tobytes()
    return ds


def test_dicom_voi_window_and_data_narrower_than_bits_stored(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4095, W), (T, H, 1)).round()
    windowed = _grey16_dicom(ramp, 16)
    windowed.WindowCenter, windowed.WindowWidth = 2048, 4096
    windowed.save_as(tmp_path / "w.dcm", enforce_file_format=True)
    clip = decode(tmp_path / "w.dcm")
    assert clip.frames.max() == 255 and clip.frames.min() == 0 and not any("BitsStored" in w for w in clip.warnings)
    # a narrow window saturates: half the ramp is white
    windowed.WindowCenter, windowed.WindowWidth = 1024, 2048
    windowed.save_as(tmp_path / "narrow.dcm", enforce_file_format=True)
    assert (decode(tmp_path / "narrow.dcm").frames == 255).mean() == pytest.approx(0.5, abs=0.03)
    # 12-bit data declared as 16-bit, no window: shown as 12-bit, with a warning (not near black)
    _grey16_dicom(ramp, 16).save_as(tmp_path / "dark.dcm", enforce_file_format=True)
    dark = decode(tmp_path / "dark.dcm")
    assert dark.frames.max() == 255
    assert any("reach only 4095 of the 65535 that BitsStored 16 allows; shown as 12-bit data" in w for w in dark.warnings)
    # data that does use its nominal 12 bits stays on the nominal scale
    half = _grey16_dicom(ramp // 2, 12)
    half.save_as(tmp_path / "half.dcm", enforce_file_format=True)
    assert decode(tmp_path / "half.dcm").frames.max() == 127  # 2047 of 4095


def test_dicom_palette_colour_with_a_16_bit_lut_keeps_its_levels(tmp_path: Path) -> None:
    idx = np.tile(np.arange(80, dtype=np.uint8), (T, H, 1))
    ds = _base_dicom(idx)
    ds.Columns = 80
    ds.PhotometricInterpretation = "PALETTE COLOR"
    lut = (np.arange(256) * 257).astype(np.uint16).tobytes()
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut)
    ds.save_as(tmp_path / "palette.dcm", enforce_file_format=True)
    frames = decode(tmp_path / "palette.dcm").frames
    assert frames[0, 0, [5, 40, 75]].tolist() == [5, 40, 75]


def test_a_raw_dicom_dataset_without_a_transfer_syntax_decodes(tmp_path: Path) -> None:
    ds = _base_dicom(moving_square())
    ds.PixelSpacing = [0.1, 0.1]
    del ds.file_meta
    ds.save_as(tmp_path / "raw.dcm", enforce_file_format=False, implicit_vr=True, little_endian=True)
    clip = decode(tmp_path / "raw.dcm")
    np.testing.assert_array_equal(clip.frames, moving_square())
    assert clip.pixel_spacing_mm == pytest.approx(0.1)


def test_a_zip_member_error_names_the_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "frames.zip", "w") as zf:
        zf.writestr("README.txt", b"notes about the exam, not an image" * 10)
    with pytest.raises(UnsupportedFormatError, match=r"^.*frames\.zip: member README\.txt"):
        decode(tmp_path / "frames.zip")


def test_npz_fps_given_as_text_is_ignored_with_a_warning(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", frames=moving_square(), fps=np.array("30"))
    clip = decode(tmp_path / "c.npz")
    assert clip.fps is None and any("'fps' is not one positive number ('30')" in w for w in clip.warnings)
