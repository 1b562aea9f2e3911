"""Decoders: a clip file (path or bytes) -> grey frames ``uint8 [N,H,W]`` + fps + pixel spacing.

One entry point, :func:`decode`, sniffs the content (magic bytes, not the file name) and
dispatches to a decoder per format:

- video (MP4, MOV, M4V, AVI, MKV/WebM) via PyAV; colour is converted to grey (BT.601 luma);
- DICOM (single frame or multi-frame cine) via pydicom, with pixel spacing and frame rate
  read from the header (see :func:`decode_dicom`);
- NPY / NPZ arrays, multi-page TIFF, single PNG/JPEG/BMP, ZIP of frame images;
- animated GIF (a cine loop as some viewers and teaching sites export it) via Pillow, with the
  frame rate from the frames' display times (see :func:`decode_gif`).

Errors form one hierarchy so callers (the importers, the gateway) can map them to messages
or HTTP codes: :class:`DecodeError` (a ``ValueError``) with the subclasses
:class:`UnsupportedFormatError` (unknown content, or no decoder for it),
:class:`FormatMismatchError` (the content contradicts the file name: a PNG called
``.mp4``), :class:`CorruptFileError` (recognised but undecodable: truncated, no pixel
data, zero frames) and :class:`LimitExceededError` (absurd dimensions or frame counts).
"""

from __future__ import annotations

import io
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Literal, cast

import numpy as np
import numpy.typing as npt

from ultramn.measure.spacing import MAX_PIXEL_SPACING_MM, MIN_PIXEL_SPACING_MM, is_anisotropic, pixel_spacing_problem

U8Array = npt.NDArray[np.uint8]

#: A file to decode: a path, or its whole content.
Source = Path | str | bytes

Format = Literal["video", "dicom", "npy", "npz", "zip", "tiff", "gif", "png", "jpeg", "bmp"]

#: Formats that hold one still image.
IMAGE_FORMATS: Final[frozenset[str]] = frozenset({"png", "jpeg", "bmp"})

#: Expected content of each known file extension (lower case, with the dot).
EXTENSION_FORMATS: Final[dict[str, frozenset[str]]] = {
    **{ext: frozenset({"video"}) for ext in (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")},
    ".dcm": frozenset({"dicom"}),
    ".dicom": frozenset({"dicom"}),
    ".npy": frozenset({"npy"}),
    ".npz": frozenset({"npz", "zip"}),
    ".zip": frozenset({"zip", "npz"}),
    ".tif": frozenset({"tiff"}),
    ".tiff": frozenset({"tiff"}),
    ".png": frozenset({"png"}),
    ".jpg": frozenset({"jpeg"}),
    ".jpeg": frozenset({"jpeg"}),
    ".bmp": frozenset({"bmp"}),
    ".gif": frozenset({"gif"}),
}

#: Bytes :func:`sniff_format` needs to see (a DICOM preamble is 128 bytes + ``DICM``).
SNIFF_BYTES: Final[int] = 512


class DecodeError(ValueError):
    """A file that cannot be turned into frames."""


class UnsupportedFormatError(DecodeError):
    """Content of an unknown type, or a known type this installation cannot decode."""


class FormatMismatchError(UnsupportedFormatError):
    """The content is not what the file name says (e.g. PNG bytes named ``clip.mp4``)."""


class CorruptFileError(DecodeError):
    """A recognised format whose content is broken: truncated, no pixel data, no frames."""


class LimitExceededError(CorruptFileError):
    """Dimensions or frame counts beyond :class:`DecodeLimits` (absurd or hostile input)."""


#: A ZIP member (one frame image) may inflate this many times its compressed size, above
#: ZIP_MEMBER_MIN_BYTES: images are compressed already, a zip bomb is not.
ZIP_MEMBER_MAX_RATIO: Final[int] = 200
ZIP_MEMBER_MIN_BYTES: Final[int] = 8 * 1024**2
#: Deflated Explicit VR Little Endian, as it appears in the file meta group near the start.
DEFLATED_DICOM_UID: Final[bytes] = b"1.2.840.10008.1.2.1.99"
DICOM_META_BYTES: Final[int] = 4096
#: A deflated DICOM's image header must come within this many inflated bytes, and its data
#: set may inflate to the declared pixel bytes plus this much of other elements (overlays,
#: icons, private tags).
DICOM_HEADER_ALLOWANCE: Final[int] = 16 * 1024**2
#: Inflation step (bytes in and out at a time).
DICOM_INFLATE_STEP: Final[int] = 1024**2

#: When set, messages name archive members and NPZ arrays by position, not by name: names
#: may carry patient data, and these messages are stored (see :func:`private_names`).
_PRIVATE_NAMES: ContextVar[bool] = ContextVar("ultramn_private_names", default=False)


@contextmanager
def private_names() -> Iterator[None]:
    """Within the block, decoder messages name no archive member or NPZ array (only positions):
    for messages that are stored, such as a batch clip's error, rather than shown to the uploader."""
    token = _PRIVATE_NAMES.set(True)
    try:
        yield
    finally:
        _PRIVATE_NAMES.reset(token)


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds a decoded clip must respect; exceeded bounds raise :class:`LimitExceededError`.

    ``max_pixels`` bounds ``N*H*W`` (bytes of the grey ``uint8`` clip, default 2 GiB). A ZIP
    of frame images may hold ``max_frames`` members of :attr:`max_zip_bytes` in all.
    """

    max_frames: int = 20_000
    max_side: int = 4096
    min_side: int = 8
    max_pixels: int = 2 * 1024**3

    @property
    def max_zip_bytes(self) -> int:
        """Summed uncompressed size of a ZIP's frame images: 8 bytes per allowed pixel (16-bit
        RGBA, the largest uncompressed frame encoding)."""
        return 8 * self.max_pixels

    def check_frame_shape(self, height: int, width: int, what: str = "frame") -> None:
        """Raise :class:`LimitExceededError` when one ``height x width`` frame is out of bounds."""
        if not (self.min_side <= height <= self.max_side and self.min_side <= width <= self.max_side):
            raise LimitExceededError(
                f"{what} size {width}x{height} is outside the allowed {self.min_side}..{self.max_side} pixels per side"
            )

    def check_clip(self, n_frames: int, height: int, width: int) -> None:
        """Raise :class:`LimitExceededError` when an ``[N,H,W]`` clip is out of bounds."""
        self.check_frame_shape(height, width)
        if n_frames > self.max_frames:
            raise LimitExceededError(f"{n_frames} frames exceed the limit of {self.max_frames}")
        if n_frames * height * width > self.max_pixels:
            raise LimitExceededError(f"{n_frames} frames of {width}x{height} exceed the limit of {self.max_pixels} pixels in all")


DEFAULT_LIMITS: Final[DecodeLimits] = DecodeLimits()


@dataclass(frozen=True)
class DecodedClip:
    """A decoded clip.

    - ``frames``: ``uint8 [N,H,W]`` grey levels, ``N >= 1`` (a still image is ``N = 1``).
    - ``fps``: frames per second, ``None`` when the file does not say.
    - ``pixel_spacing_mm``: isotropic pixel size in mm (mean of x and y), ``None`` if unknown.
    - ``pixel_spacing_xy_mm``: ``(x, y)`` = (column, row) pixel size in mm, ``None`` if unknown.
    - ``format``: the detected :data:`Format`.
    - ``warnings``: things the caller may want to show (e.g. anisotropic pixels).
    - ``spacing_warnings``: those of ``warnings`` about the file's pixel spacing (missing,
      implausible, anisotropic): moot, and dropped, when the caller gives the spacing itself.
    """

    frames: U8Array
    fps: float | None
    pixel_spacing_mm: float | None
    pixel_spacing_xy_mm: tuple[float, float] | None
    format: str
    warnings: tuple[str, ...] = field(default=())
    spacing_warnings: tuple[str, ...] = field(default=())

    def warnings_given_spacing(self, spacing_given: bool) -> tuple[str, ...]:
        """:attr:`warnings`, without :attr:`spacing_warnings` when the caller gives the spacing."""
        return tuple(w for w in self.warnings if w not in self.spacing_warnings) if spacing_given else self.warnings

    def __post_init__(self) -> None:
        if self.frames.ndim != 3 or self.frames.dtype != np.uint8 or self.frames.shape[0] < 1:
            raise ValueError(f"frames must be uint8 [N>=1,H,W], got {self.frames.dtype} {self.frames.shape}")

    @property
    def n_frames(self) -> int:
        """``N``."""
        return int(self.frames.shape[0])


# ---------------------------------------------------------------------------------------
# sniffing


def _magic_format(head: bytes) -> str | None:
    """The format the first bytes announce, or ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # Matroska / WebM
        return "video"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A DICOM file without preamble starts with a group-0008 (or 0002) little-endian tag."""
    return len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00") and head[3:4] == b"\x00"


def sniff_format(head: bytes, filename: str | None = None) -> str:
    """Detect the format from the first bytes of a file (at least :data:`SNIFF_BYTES` if possible).

    The file name only serves as a cross-check: a known extension whose format differs
    from the content raises :class:`FormatMismatchError`; unknown content raises
    :class:`UnsupportedFormatError`. ZIP content named ``.npz`` is reported as ``"npz"``.
    """
    ext = Path(filename).suffix.lower() if filename else ""
    found = _magic_format(head)
    if found is None and ext in ("", ".dcm", ".dicom") and _looks_like_raw_dicom(head):
        found = "dicom"
    if found is None:
        if not head:
            raise CorruptFileError(f"{filename or 'the upload'} is empty")
        raise UnsupportedFormatError(
            f"{filename or 'the upload'}: unrecognised content (supported: MP4/MOV/AVI video, DICOM, "
            "NPY/NPZ, TIFF, animated GIF, PNG, JPEG, BMP, ZIP of frame images)"
        )
    expected = EXTENSION_FORMATS.get(ext)
    if expected is not None and found not in expected:
        raise FormatMismatchError(f"{filename}: the name says {ext} but the content is {found}")
    if found == "zip" and ext == ".npz":
        return "npz"
    return found


# ---------------------------------------------------------------------------------------
# helpers


def _name_of(source: Source, filename: str | None) -> str:
    if filename:
        return filename
    return str(source) if isinstance(source, str | Path) else "the upload"


def _head(source: Source, n: int = SNIFF_BYTES) -> bytes:
    if isinstance(source, bytes):
        return source[:n]
    try:
        with open(source, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise DecodeError(f"cannot read {source}: {exc.strerror or exc}") from exc


@contextmanager
def _open(source: Source) -> Iterator[IO[bytes]]:
    """A binary file object over ``source``."""
    if isinstance(source, bytes):
        yield io.BytesIO(source)
        return
    try:
        fh = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DecodeError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        yield fh
    finally:
        fh.close()


_LUMA = np.array([0.299, 0.587, 0.114])


def rgb_to_grey(rgb: npt.NDArray[Any]) -> U8Array:
    """``[..., 3 or 4]`` colour (uint8) -> ``uint8 [...]`` grey (BT.601 luma, alpha ignored)."""
    arr = to_uint8(np.asarray(rgb)[..., :3])
    grey = arr.astype(np.float32) @ _LUMA.astype(np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def to_uint8(arr: npt.NDArray[Any], bits_stored: int | None = None) -> U8Array:
    """Map intensities to ``uint8``.

    ``uint8`` passes through; ``bool`` -> 0/255; unsigned integers with ``bits_stored``
    are scaled from their nominal range ``0..2**bits_stored-1``; floats in ``[0, 1]`` are
    scaled by 255; integers already in ``0..255`` are cast; anything else is min-max
    rescaled over the whole array. Non-finite floats (NaN, +-inf) take the lowest finite
    value (all zeros when there is none); :func:`_array_to_frames` reports them.
    """
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return np.where(a, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if a.size == 0:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.unsignedinteger) and bits_stored and bits_stored > 8:
        top = float(2**bits_stored - 1)
        return np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.any():
            return np.zeros(a.shape, np.uint8)
        if not finite.all():
            a = np.where(finite, a, a[finite].min())
    lo, hi = float(a.min()), float(a.max())
    if np.issubdtype(a.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return _scaled_uint8(a, lo, 255.0 / (hi - lo))


def _scaled_uint8(a: npt.NDArray[Any], offset: float, scale: float) -> U8Array:
    """``clip(rint((a - offset) * scale), 0, 255)`` as ``uint8``, a frame at a time in float32:
    the float64 copies of a whole clip cost 24 bytes per pixel (3 GB for 128 Mpx of 16-bit
    data); this costs one frame's float32 at most (exact for integers up to 2**24)."""
    out = np.empty(a.shape, np.uint8)
    if a.ndim == 0:
        out[...] = np.clip(np.rint((float(a) - offset) * scale), 0, 255)
        return out
    for i in range(a.shape[0]):
        frame = (a[i].astype(np.float32) - np.float32(offset)) * np.float32(scale)
        np.clip(np.rint(frame, out=frame), 0, 255, out=frame)
        out[i] = frame
    return out


def _finish(
    frames: U8Array,
    fmt: str,
    limits: DecodeLimits,
    fps: float | None = None,
    spacing_xy: tuple[float, float] | None = None,
    warnings: tuple[str, ...] = (),
    spacing_notes: tuple[str, ...] = (),
) -> DecodedClip:
    """The :class:`DecodedClip`; ``spacing_notes`` are warnings about the file's pixel spacing."""
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise CorruptFileError(f"{fmt}: no frames decoded")
    limits.check_clip(*frames.shape)
    spacing = None
    about_spacing = list(spacing_notes)
    if spacing_xy is not None:
        sx, sy = spacing_xy
        spacing = (sx + sy) / 2.0
        if is_anisotropic(sx, sy):
            about_spacing.append(f"anisotropic pixels: {sx:.4g} mm wide (x) by {sy:.4g} mm tall (y)")
    return DecodedClip(
        frames=np.ascontiguousarray(frames),
        fps=fps if fps is not None and np.isfinite(fps) and fps > 0 else None,
        pixel_spacing_mm=spacing,
        pixel_spacing_xy_mm=spacing_xy,
        format=fmt,
        warnings=(*warnings, *about_spacing),
        spacing_warnings=tuple(about_spacing),
    )


def _array_to_frames(arr: npt.NDArray[Any], what: str) -> tuple[U8Array, tuple[str, ...]]:
    """``[H,W]``, ``[H,W,3|4]``, ``[N,H,W]`` or ``[N,H,W,3|4]`` -> ``uint8 [N,H,W]`` grey, warnings.

    Float arrays may hold some NaN or infinite pixels (shown as the lowest finite level, with a
    warning); an array with no finite pixel at all is a :class:`CorruptFileError`.
    """
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise UnsupportedFormatError(f"{what}: array of dtype {a.dtype} is not an image")
    warnings: tuple[str, ...] = ()
    if a.dtype.kind == "f":
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad == a.size:
            raise CorruptFileError(f"{what}: every pixel is NaN or infinite")
        if bad:
            warnings = (f"{what}: {bad} of {a.size} pixel values are NaN or infinite; shown as the lowest finite level",)
    return _shape_to_frames(a, what), warnings


def _shape_to_frames(a: npt.NDArray[Any], what: str) -> U8Array:
    """The layouts of :func:`_array_to_frames` -> ``uint8 [N,H,W]`` grey."""
    if a.ndim == 2:
        return to_uint8(a)[None]
    if a.ndim == 3 and a.shape[-1] in (3, 4) and min(a.shape[:2]) > 4:
        return rgb_to_grey(a)[None]
    if a.ndim == 3:
        return to_uint8(a)
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        return rgb_to_grey(a)
    if a.ndim == 4 and a.shape[-1] == 1:
        return to_uint8(a[..., 0])
    raise UnsupportedFormatError(f"{what}: array of shape {a.shape} is not [H,W], [N,H,W] or [N,H,W,3]")


# ---------------------------------------------------------------------------------------
# decoders per format


_TAG_DURATION = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


def _declared_seconds(stream: Any, container: Any) -> float | None:
    """The stream's duration in seconds as the container declares it: the stream's own, else
    its ``DURATION`` tag (Matroska/WebM keep it there), else the container's when the video
    is its only stream (another stream may last longer)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = _TAG_DURATION.match(str((stream.metadata or {}).get("DURATION", "")).strip())
    if tag:
        return int(tag[1]) * 3600 + int(tag[2]) * 60 + float(tag[3])
    if container.duration and len(container.streams) == 1:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE units
    return None


def _declared_frame_count(stream: Any, container: Any, fps: float | None) -> int | None:
    """Frames the container says the stream holds (its frame count, else duration x rate)."""
    if stream.frames:
        return int(stream.frames)
    seconds = _declared_seconds(stream, container)
    return round(seconds * fps) if seconds and fps else None


def _shortfall_note(n_decoded: int, declared: int | None) -> tuple[str, ...]:
    """A warning when clearly fewer frames decoded than the container declares (a cut file)."""
    if declared is None or n_decoded >= declared - max(1, declared // 50):
        return ()
    return (f"only {n_decoded} of the {declared} frames the container declares could be decoded (a truncated file?)",)


def decode_video(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """MP4/MOV/AVI/MKV via PyAV: every frame of the first video stream, converted to grey.

    A display-matrix rotation (phones, some scanners' exports) is applied, so frames come
    out upright as a player shows them. A file that decodes fewer frames than its container
    declares keeps the frames that decoded, with a warning.
    """
    import av

    name = _name_of(source, filename)
    frames: list[U8Array] = []
    declared: int | None = None
    try:
        with _open(source) as fh, av.open(fh, mode="r") as container:
            if not container.streams.video:
                raise CorruptFileError(f"{name}: no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx.width and ctx.height:
                limits.check_frame_shape(ctx.height, ctx.width)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            declared = _declared_frame_count(stream, container, fps)
            for frame in container.decode(stream):
                if len(frames) >= limits.max_frames:
                    raise LimitExceededError(f"{name}: more than {limits.max_frames} frames")
                quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
                grey: U8Array = np.rot90(np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8), quarter_turns)
                if frames and grey.shape != frames[0].shape:
                    raise CorruptFileError(f"{name}: frame size changes mid-stream")
                if not frames:
                    limits.check_frame_shape(int(grey.shape[0]), int(grey.shape[1]))
                frames.append(np.asarray(grey, dtype=np.uint8))
                if len(frames) * grey.size > limits.max_pixels:
                    raise LimitExceededError(f"{name}: clip exceeds {limits.max_pixels} pixels in all")
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
        if not frames:
            raise CorruptFileError(f"{name}: undecodable video ({exc})") from exc
        # a stream cut short after good frames: keep what decoded (common with live exports)
        notes = (f"decoding stopped early: {exc}", *_shortfall_note(len(frames), declared))
        return _finish(np.stack(frames), "video", limits, fps, warnings=notes)
    if not frames:
        raise CorruptFileError(f"{name}: the video has no decodable frames")
    return _finish(np.stack(frames), "video", limits, fps, warnings=_shortfall_note(len(frames), declared))


def _positive_float(value: Any) -> float | None:
    """``value`` as one finite number > 0, else ``None`` (missing, text, several values, <= 0, NaN).

    Text does not count, even when it spells a number (pydicom's ``DS``/``IS`` values are numbers).
    """
    if isinstance(value, np.ndarray) and (value.size != 1 or value.dtype.kind not in "biuf"):
        return None
    if isinstance(value, str | bytes):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _spacing_mm(value: Any) -> float | None:
    """``value`` as a plausible pixel size in mm (:func:`pixel_spacing_problem`), else ``None``."""
    number = _positive_float(value)
    return number if number is not None and pixel_spacing_problem(number) is None else None


#: How a message names the plausible pixel sizes.
_SPACING_RANGE = f"a pixel size in mm from {MIN_PIXEL_SPACING_MM:g} to {MAX_PIXEL_SPACING_MM:g}"


def _header(ds: Any, keyword: str) -> Any:
    """A DICOM header value, ``None`` when absent or malformed (pydicom converts on access)."""
    try:
        return getattr(ds, keyword, None)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError):
        return None


def _values(value: Any) -> list[Any]:
    """A header value as a list: multi-valued elements as they are, a single value as ``[value]``."""
    if value is None or isinstance(value, str | bytes):
        return [] if value in (None, "", b"") else [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _dicom_spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None]:
    """``((x_mm, y_mm), None)`` from the header, or ``(None, reason)``.

    Ultrasound regions (``SequenceOfUltrasoundRegions``) state ``PhysicalDeltaX/Y`` in the
    unit ``PhysicalUnitsX/YDirection``; unit 3 is centimetres (converted to mm here).
    The largest 2D region with centimetre units wins. Otherwise ``PixelSpacing``
    (row spacing, column spacing) in mm.
    """
    best: tuple[int, float, float] | None = None
    implausible: list[str] = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
        try:
            ux, uy = int(region.PhysicalUnitsXDirection), int(region.PhysicalUnitsYDirection)
            dx, dy = abs(float(region.PhysicalDeltaX)), abs(float(region.PhysicalDeltaY))
        except (AttributeError, TypeError, ValueError):
            continue
        if ux != 3 or uy != 3 or dx <= 0 or dy <= 0:
            continue
        if _spacing_mm(dx * 10.0) is None or _spacing_mm(dy * 10.0) is None:
            implausible.append(f"{dx:g} x {dy:g} cm")
            continue
        try:
            area = (int(region.RegionLocationMaxX1) - int(region.RegionLocationMinX0)) * (
                int(region.RegionLocationMaxY1) - int(region.RegionLocationMinY0)
            )
        except (AttributeError, TypeError, ValueError):
            area = 0
        if best is None or area > best[0]:
            best = (area, dx * 10.0, dy * 10.0)
    if best is not None:
        return (best[1], best[2]), None
    spacing = _values(_header(ds, "PixelSpacing"))
    if not spacing:
        if implausible:
            return None, f"ultrasound region spacing ({', '.join(implausible)}) is not {_SPACING_RANGE}; ignored"
        return None, "no pixel spacing in the header"
    row, col = (_spacing_mm(v) for v in spacing) if len(spacing) == 2 else (None, None)
    if row is None or col is None:
        return None, f"PixelSpacing in the header ({', '.join(str(v) for v in spacing)}) is not two values of {_SPACING_RANGE}; ignored"
    return (col, row), None


def _dicom_fps(ds: Any) -> float | None:
    """Frame rate from ``CineRate``, ``FrameTime`` (ms), ``FrameTimeVector`` or ``RecommendedDisplayFrameRate``.

    The first of them that holds a positive number wins; malformed values are skipped.
    """
    rate = _positive_float(_header(ds, "CineRate"))
    if rate is not None:
        return rate
    frame_time = _positive_float(_header(ds, "FrameTime"))
    if frame_time is not None:
        return 1000.0 / frame_time
    steps = [t for t in (_positive_float(v) for v in _values(_header(ds, "FrameTimeVector"))[1:]) if t is not None]
    if steps:
        return 1000.0 / float(np.mean(steps))
    return _positive_float(_header(ds, "RecommendedDisplayFrameRate"))


def _bits_stored(ds: Any) -> int:
    """``BitsStored`` from the header, 8 when absent or malformed."""
    bits = _positive_float(_header(ds, "BitsStored"))
    return int(bits) if bits is not None else 8


def _assume_transfer_syntax(ds: Any) -> None:
    """Give a dataset without a Transfer Syntax UID (no file meta, or a raw dataset) the
    uncompressed syntax it was read with, so pydicom can decode its pixels."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _dicom_window(ds: Any) -> tuple[float, float] | None:
    """The first VOI window ``(center, width)`` of a monochrome image, ``None`` when absent or unusable."""
    centers, widths = _values(_header(ds, "WindowCenter")), _values(_header(ds, "WindowWidth"))
    if not centers or not widths:
        return None
    try:
        center, width = float(centers[0]), float(widths[0])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(center) and math.isfinite(width) and width >= 1.0):
        return None
    return center, width


def _apply_window(values: npt.NDArray[Any], center: float, width: float, exact: bool) -> U8Array:
    """DICOM linear VOI windowing (PS3.3 C.11.2.1.2) of modality values to ``uint8`` 0..255."""
    # y = (v - c') / w' + 0.5, times 255: one frame at a time (see _scaled_uint8)
    if exact:  # LINEAR_EXACT
        c, w = center, width
    else:
        c, w = center - 0.5, (width - 1.0 if width > 1.0 else 1.0)
    return _scaled_uint8(values, c - 0.5 * w, 255.0 / w)


def _monochrome_to_uint8(grey: npt.NDArray[Any], ds: Any, name: str) -> tuple[U8Array, tuple[str, ...]]:
    """Stored monochrome pixels ``[N,H,W]`` -> ``uint8``, as a DICOM viewer would show them.

    With a VOI window in the header, the window (applied to the modality values: rescale
    slope/intercept). Otherwise the nominal range of ``BitsStored``; when the pixels use less
    than a sixteenth of it (12-bit data declared as 16-bit), the range they use, with a warning.
    """
    window = _dicom_window(ds)
    if window is not None:
        from pydicom.pixels import apply_modality_lut

        try:
            values = np.asarray(apply_modality_lut(grey, ds))
        except Exception:  # a malformed modality LUT: window the stored values
            values = grey
        function = str(_header(ds, "VOILUTFunction") or "LINEAR").upper()
        return _apply_window(values, *window, exact=function == "LINEAR_EXACT"), ()
    bits = _bits_stored(ds)
    if np.issubdtype(grey.dtype, np.unsignedinteger) and bits > 8 and grey.size:
        top = int(grey.max())
        if 0 < top < 2 ** (bits - 4):
            used = max(8, top.bit_length())
            note = f"{name}: pixel values reach only {top} of the {2**bits - 1} that BitsStored {bits} allows; shown as {used}-bit data"
            return to_uint8(grey, bits_stored=used), (note,)
    return to_uint8(grey, bits_stored=bits), ()


def _dicom_decoder_hint(transfer_syntax: Any) -> str | None:
    """``None`` if pixel data in ``transfer_syntax`` can be decoded here, else a hint."""
    try:
        from pydicom.pixels.decoders.base import get_decoder
    except ImportError:  # pydicom < 3: rely on the handlers at decode time
        return None
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return f"transfer syntax {getattr(transfer_syntax, 'name', transfer_syntax)} is not supported by pydicom"
    if decoder.is_available:
        return None
    return (
        f"no decoder installed for {getattr(transfer_syntax, 'name', transfer_syntax)}; "
        "install pylibjpeg + pylibjpeg-libjpeg (JPEG lossless), pyjpegls (JPEG-LS) or python-gdcm"
    )


def _declared_pixel_bytes(head: bytes, limits: DecodeLimits) -> int | None:
    """Bytes of pixel data the image header in ``head`` (a DICOM file, possibly cut short)
    declares: frames x rows x columns x samples x bytes per sample; ``None`` while the header
    is not complete in ``head``. A declared clip beyond ``limits`` raises
    :class:`LimitExceededError`."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True, force=True)
        if "BitsAllocated" not in ds:  # sorted after Rows, Columns, NumberOfFrames, SamplesPerPixel
            return None
        frames = getattr(ds, "NumberOfFrames", None)
        n, rows, cols = 1 if frames in (None, "") else int(frames), int(ds.Rows), int(ds.Columns)
        per_pixel = int(getattr(ds, "SamplesPerPixel", 1) or 1) * math.ceil(int(ds.BitsAllocated) / 8)
    except Exception:  # a header cut mid-element, or a malformed one: decided by the full read
        return None
    limits.check_clip(n, rows, cols)
    return n * rows * cols * per_pixel


def _inflated_dicom(fh: IO[bytes], name: str, limits: DecodeLimits) -> io.BytesIO:
    """A deflated DICOM file (``fh``) rewritten as Explicit VR Little Endian, inflated in
    bounded steps. The image header must come within :data:`DICOM_HEADER_ALLOWANCE` bytes,
    its declared clip must pass ``limits``, and the whole data set may then inflate to the
    declared pixel bytes plus that allowance: a bomb stops at its bound, not after it has
    filled the memory. Raises :class:`LimitExceededError` or :class:`CorruptFileError`."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info

    try:
        read_preamble(cast(BinaryIO, fh), False)
        meta = _read_file_meta_info(cast(BinaryIO, fh))
    except Exception as exc:  # pydicom raises many types for a broken file meta group
        raise CorruptFileError(f"{name}: unreadable DICOM file meta ({exc})") from exc
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(out), meta, enforce_standard=True)
    start = out.tell()
    bound, header_read = DICOM_HEADER_ALLOWANCE, False
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = b""
    try:
        while not inflater.eof:
            if not pending and not (pending := fh.read(DICOM_INFLATE_STEP)):
                break
            # max_length is at least 1 (0 would mean unbounded): one byte past the bound is refused
            out.write(inflater.decompress(pending, min(DICOM_INFLATE_STEP, bound + 1 - (out.tell() - start))))
            pending = inflater.unconsumed_tail
            if not header_read and (declared := _declared_pixel_bytes(out.getvalue(), limits)) is not None:
                header_read, bound = True, declared + DICOM_HEADER_ALLOWANCE
            if out.tell() - start > bound:
                what = "more than its image header declares" if header_read else "without an image header"
                raise LimitExceededError(f"{name}: deflated DICOM inflates beyond {bound} bytes {what}")
        out.write(inflater.flush())
    except zlib.error as exc:
        raise CorruptFileError(f"{name}: corrupt deflated DICOM data ({exc})") from exc
    out.seek(0)
    return out


def decode_dicom(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """DICOM single-frame or multi-frame cine via pydicom.

    Photometric interpretations: MONOCHROME1/2 (MONOCHROME1 inverted), RGB and YBR_*
    (converted to RGB by pydicom, then to grey), PALETTE COLOR (LUT applied, then grey).
    Compressed transfer syntaxes decode when a pydicom plugin for them is installed
    (Pillow: JPEG baseline/extended, JPEG 2000; pydicom itself: RLE).
    Spacing: see :func:`_dicom_spacing`; fps: see :func:`_dicom_fps`.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = _name_of(source, filename)
    with _open(source) as raw:
        deflated = DEFLATED_DICOM_UID in raw.read(DICOM_META_BYTES)
        raw.seek(0)
        fh = _inflated_dicom(raw, name, limits) if deflated else raw
        try:
            ds = pydicom.dcmread(fh, force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{name}: unreadable DICOM ({exc})") from exc
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise CorruptFileError(f"{name}: DICOM without pixel data (a report or structured document?)")
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            declared = getattr(ds, "NumberOfFrames", None)
            n_frames = 1 if declared in (None, "") else int(declared)
            samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        except (AttributeError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{name}: DICOM image header incomplete ({exc})") from exc
        if n_frames < 1 or ("PixelData" in ds and not ds.PixelData):
            raise CorruptFileError(f"{name}: DICOM with zero frames")
        limits.check_clip(n_frames, rows, cols)
        _assume_transfer_syntax(ds)
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if tsyntax is not None and tsyntax.is_compressed:
            hint = _dicom_decoder_hint(tsyntax)
            if hint is not None:
                raise UnsupportedFormatError(f"{name}: {hint}")
        try:
            arr = np.asarray(ds.pixel_array)
        except DecodeError:
            raise
        except Exception as exc:  # pydicom raises many types for broken pixel data
            raise CorruptFileError(f"{name}: cannot decode DICOM pixel data ({exc})") from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    colour_bits = _bits_stored(ds)
    notes: tuple[str, ...] = ()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = np.asarray(apply_color_lut(arr, ds))
            colour_bits = int(_values(_header(ds, "RedPaletteColorLookupTableDescriptor"))[2])
        except Exception as exc:  # a missing or malformed palette
            raise CorruptFileError(f"{name}: cannot apply the DICOM colour palette ({exc})") from exc
        samples = 3
    if samples == 1:
        grey = arr if arr.ndim == 3 else arr[None]
        if grey.ndim != 3:
            raise CorruptFileError(f"{name}: unexpected pixel array shape {arr.shape}")
        frames, notes = _monochrome_to_uint8(grey, ds, name)
        if photometric == "MONOCHROME1":
            frames = (255 - frames).astype(np.uint8)
    else:
        colour = arr if arr.ndim == 4 else arr[None]
        if colour.ndim != 4 or colour.shape[-1] < 3:
            raise CorruptFileError(f"{name}: unexpected colour pixel array shape {arr.shape}")
        frames = rgb_to_grey(to_uint8(colour, bits_stored=colour_bits))
    spacing, reason = _dicom_spacing(ds)
    return _finish(frames, "dicom", limits, _dicom_fps(ds), spacing, notes, (reason,) if reason else ())


def decode_npy(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """An ``.npy`` array ``[H,W]``, ``[N,H,W]``, ``[H,W,3]`` or ``[N,H,W,3]`` (see :func:`to_uint8`)."""
    name = _name_of(source, filename)
    with _open(source) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            shape, _, _ = np.lib.format._read_array_header(fh, version)  # type: ignore[attr-defined]
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptFileError(f"{name}: unreadable NPY header ({exc})") from exc
        _check_array_shape(tuple(shape), limits, name)
        fh.seek(0)
        try:
            arr = np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptFileError(f"{name}: unreadable NPY ({exc})") from exc
    frames, warnings = _array_to_frames(arr, name)
    return _finish(frames, "npy", limits, warnings=warnings)


def _check_array_shape(shape: tuple[int, ...], limits: DecodeLimits, name: str) -> None:
    """Reject absurd arrays before loading them."""
    if any(s <= 0 for s in shape) or len(shape) < 2:
        raise CorruptFileError(f"{name}: empty or one-dimensional array {shape}")
    if int(np.prod(shape, dtype=np.int64)) > 4 * limits.max_pixels:
        raise LimitExceededError(f"{name}: array of shape {shape} is too large")


def npz_member_shape(zf: zipfile.ZipFile, member: str) -> tuple[int, ...]:
    """The shape the NPY header of ``member`` (e.g. ``frames.npy``) of an open NPZ declares: only
    the header is read, nothing is inflated (a 1 MB NPZ may declare gigabytes)."""
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape)


def decode_npz(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """An ``.npz`` with ``frames`` (or a single array); optional scalars ``fps`` and ``pixel_spacing_mm``."""
    name = _name_of(source, filename)
    with _open(source) as fh:
        try:
            with np.load(fh, allow_pickle=False) as data:
                keys = list(data.keys())
                key = "frames" if "frames" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    shown = keys if not _PRIVATE_NAMES.get() else f"{len(keys)} arrays"
                    raise UnsupportedFormatError(f"{name}: NPZ with arrays {shown} but none called 'frames'")
                # before inflating it: a 1 MB NPZ may declare gigabytes
                _check_array_shape(npz_member_shape(data.zip, f"{key}.npy"), limits, name)
                arr = np.asarray(data[key])
                meta = {k: np.asarray(data[k]) for k in ("fps", "pixel_spacing_mm") if k in keys and k != key}
        except DecodeError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise CorruptFileError(f"{name}: unreadable NPZ ({exc})") from exc
    _check_array_shape(arr.shape, limits, name)
    frames, warnings = _array_to_frames(arr, name)
    notes = list(warnings)
    fps = _positive_float(meta["fps"]) if "fps" in meta else None
    spacing = _spacing_mm(meta["pixel_spacing_mm"]) if "pixel_spacing_mm" in meta else None
    if "fps" in meta and fps is None:
        notes.append(f"{name}: 'fps' is not one positive number ({_describe(meta['fps'])}); ignored")
    spacing_notes: tuple[str, ...] = ()
    if "pixel_spacing_mm" in meta and spacing is None:
        spacing_notes = (f"{name}: 'pixel_spacing_mm' is not one value, {_SPACING_RANGE} ({_describe(meta['pixel_spacing_mm'])}); ignored",)
    spacing_xy = (spacing, spacing) if spacing is not None else None
    return _finish(frames, "npz", limits, fps, spacing_xy, tuple(notes), spacing_notes)


def _describe(value: npt.NDArray[Any]) -> str:
    """A short description of an NPZ metadata array for a message: its value, or its shape."""
    return repr(value.item()) if value.size == 1 else f"an array of shape {value.shape}"


#: Pillow modes whose pixels are wider than 8 bits: kept as numbers until the whole clip is
#: scaled once (:func:`_pages_to_frames`), so a fade across pages survives.
_WIDE_MODES: Final[frozenset[str]] = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})


def _pil_pages(
    fh: IO[bytes], name: str, limits: DecodeLimits, max_frames: int, durations_ms: list[int] | None = None
) -> list[npt.NDArray[Any]]:
    """Every page of an image file (one for PNG/JPEG/BMP) as a grey ``[H,W]`` array, upright.

    8-bit and colour pages come back as ``uint8``; 16-bit, 32-bit and float pages keep their
    numbers (scale them with :func:`_pages_to_frames`). An EXIF ``Orientation`` is applied, as
    an image viewer would. Pages of differing size are a :class:`CorruptFileError`. Each
    page's display time (ms, 0 when the file gives none) is appended to ``durations_ms``.
    """
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    out: list[npt.NDArray[Any]] = []
    try:
        with Image.open(fh) as im:
            first_size = (im.height, im.width)
            limits.check_frame_shape(*first_size)
            for page in ImageSequence.Iterator(im):
                if len(out) >= max_frames:
                    raise LimitExceededError(f"{name}: more than {max_frames} pages")
                if (page.height, page.width) != first_size:
                    raise CorruptFileError(
                        f"{name}: pages differ in size (page {len(out) + 1} is {page.width}x{page.height}, "
                        f"page 1 is {first_size[1]}x{first_size[0]})"
                    )
                if (len(out) + 1) * first_size[0] * first_size[1] > limits.max_pixels:  # before decoding the page
                    raise LimitExceededError(f"{name}: clip exceeds {limits.max_pixels} pixels in all")
                out.append(_pil_to_grey(ImageOps.exif_transpose(page)))
                if durations_ms is not None:
                    durations_ms.append(int(page.info.get("duration", 0) or 0))
    except DecodeError:
        raise
    except UnidentifiedImageError as exc:  # its message names a Python object, not the file
        raise CorruptFileError(f"{name}: not a readable image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError) as exc:
        # IndexError: Pillow's GIF reader on a file cut inside a frame header
        raise CorruptFileError(f"{name}: undecodable image ({exc or type(exc).__name__})") from exc
    return out


def _pil_to_grey(page: Any) -> npt.NDArray[Any]:
    """A Pillow image (any mode) -> grey ``[H,W]``: ``uint8``, or the raw numbers of a wide mode."""
    mode = page.mode
    if mode in ("L", "1"):
        return np.asarray(page.convert("L"), dtype=np.uint8)
    if mode in _WIDE_MODES:
        return np.asarray(page)
    if mode in ("LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "HSV", "LAB"):
        return np.asarray(page.convert("RGB").convert("L"), dtype=np.uint8)
    return np.asarray(page.convert("L"), dtype=np.uint8)


def _pages_to_frames(pages: list[npt.NDArray[Any]]) -> U8Array:
    """Same-size grey pages -> ``uint8 [N,H,W]``, scaled once over the whole clip (:func:`to_uint8`)."""
    return to_uint8(np.stack(pages))


def decode_image(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """A single PNG/JPEG/BMP still: a clip of one frame (colour -> grey)."""
    name = _name_of(source, filename)
    fmt = sniff_format(_head(source), filename or (str(source) if not isinstance(source, bytes) else None))
    with _open(source) as fh:
        pages = _pil_pages(fh, name, limits, max_frames=1)
    return _finish(_pages_to_frames(pages), fmt, limits)


def decode_tiff(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """A (multi-page) TIFF: one frame per page; all pages must share one size."""
    name = _name_of(source, filename)
    with _open(source) as fh:
        pages = _pil_pages(fh, name, limits, max_frames=limits.max_frames)
    if not pages:
        raise CorruptFileError(f"{name}: TIFF without pages")
    return _finish(_pages_to_frames(pages), "tiff", limits)


#: Browsers show a GIF frame whose delay is this short or shorter (ms) for
#: :data:`GIF_DEFAULT_DELAY_MS` instead; :func:`decode_gif` reads the frame rate the same way.
GIF_MIN_DELAY_MS: Final[int] = 10
GIF_DEFAULT_DELAY_MS: Final[int] = 100


def gif_fps(delays_ms: list[int]) -> float | None:
    """Frames per second of a GIF whose frames are shown for ``delays_ms`` each.

    The median shown delay, with a delay of :data:`GIF_MIN_DELAY_MS` or less shown as
    :data:`GIF_DEFAULT_DELAY_MS` (as browsers do); ``None`` for a still (fewer than 2 frames)
    and for a GIF that gives no delay at all.
    """
    if len(delays_ms) < 2 or not any(delays_ms):
        return None
    shown = [d if d > GIF_MIN_DELAY_MS else GIF_DEFAULT_DELAY_MS for d in delays_ms]
    return 1000.0 / float(np.median(shown))


def decode_gif(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """An (animated) GIF: one frame per GIF frame, as a viewer shows it (palette -> grey).

    Each frame is the whole composited picture (earlier frames' pixels kept where the
    frame leaves them), so partial-update GIFs decode to full frames. ``fps`` comes from the
    frames' display times (:func:`gif_fps`); a still GIF is a clip of one frame.
    """
    name = _name_of(source, filename)
    delays: list[int] = []
    with _open(source) as fh:
        pages = _pil_pages(fh, name, limits, max_frames=limits.max_frames, durations_ms=delays)
    if not pages:
        raise CorruptFileError(f"{name}: GIF without frames")
    return _finish(_pages_to_frames(pages), "gif", limits, fps=gif_fps(delays))


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``frame2`` before ``frame10`` (case-insensitive)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in _DIGITS.split(text) if part)


def _zip_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """File members, without folders, macOS resource forks or hidden files."""
    keep = []
    for info in zf.infolist():
        base = info.filename.rsplit("/", 1)[-1]
        if info.is_dir() or info.filename.startswith("__MACOSX/") or base.startswith(".") or not base:
            continue
        keep.append(info)
    return keep


def decode_zip(source: Source, limits: DecodeLimits = DEFAULT_LIMITS, filename: str | None = None) -> DecodedClip:
    """A ZIP of frame images (PNG/JPEG/BMP/TIFF), one frame each, sorted naturally by name.

    A ZIP whose members are all ``.npy`` is read as NPZ (:func:`decode_npz`).
    """
    name = _name_of(source, filename)
    with _open(source) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                members = _zip_members(zf)
                if members and all(m.filename.lower().endswith(".npy") for m in members):
                    fh.seek(0)
                    return decode_npz(fh.read(), limits, filename=name)
                if len(members) > limits.max_frames:  # one frame per member: refused before any is read
                    raise LimitExceededError(f"{name}: {len(members)} frame images exceed the limit of {limits.max_frames} frames")
                if sum(m.file_size for m in members) > limits.max_zip_bytes:
                    raise LimitExceededError(f"{name}: uncompressed size exceeds {limits.max_zip_bytes} bytes")
                frames: list[npt.NDArray[Any]] = []
                for index, info in enumerate(sorted(members, key=lambda m: natural_key(m.filename))):
                    label = f"member {index + 1}" if _PRIVATE_NAMES.get() else info.filename
                    if info.file_size > max(ZIP_MEMBER_MIN_BYTES, ZIP_MEMBER_MAX_RATIO * info.compress_size):
                        raise LimitExceededError(
                            f"{name}: {label} inflates {info.compress_size} bytes to {info.file_size} "
                            f"(more than {ZIP_MEMBER_MAX_RATIO}x: not a compressed image)"
                        )
                    data = zf.read(info)
                    try:
                        fmt = sniff_format(data[:SNIFF_BYTES], info.filename)
                    except DecodeError as exc:
                        raise type(exc)(f"{name}: member {exc}" if not _PRIVATE_NAMES.get() else f"{name}: {label}: unsupported") from exc
                    if fmt not in IMAGE_FORMATS and fmt != "tiff":
                        raise UnsupportedFormatError(f"{name}: member {label} is {fmt}, not a frame image")
                    page = _pil_pages(io.BytesIO(data), f"{name}:{label}", limits, max_frames=1)[0]
                    if frames and page.shape != frames[0].shape:
                        raise CorruptFileError(
                            f"{name}: {label} is {page.shape[1]}x{page.shape[0]}, other frames {frames[0].shape[1]}x{frames[0].shape[0]}"
                        )
                    frames.append(page)
                    if len(frames) * page.size > limits.max_pixels:
                        raise LimitExceededError(f"{name}: clip exceeds {limits.max_pixels} pixels in all")
        except DecodeError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(f"{name}: unreadable ZIP ({exc})") from exc
    if not frames:
        raise CorruptFileError(f"{name}: ZIP without frame images")
    return _finish(_pages_to_frames(frames), "zip", limits)


_DECODERS: Final[dict[str, Callable[..., DecodedClip]]] = {
    "video": decode_video,
    "dicom": decode_dicom,
    "npy": decode_npy,
    "npz": decode_npz,
    "zip": decode_zip,
    "tiff": decode_tiff,
    "gif": decode_gif,
    "png": decode_image,
    "jpeg": decode_image,
    "bmp": decode_image,
}


def decode(source: Source, filename: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedClip:
    """Decode ``source`` (a path, or the bytes of an upload named ``filename``).

    Raises a :class:`DecodeError` subclass for unsupported, lying, corrupt or absurd input.
    Its message names the file as ``filename``: a library's own message that quotes the
    path it was given (PyAV, Pillow) has that path replaced, so a server's storage paths
    never reach its clients.
    """
    if filename is None and not isinstance(source, bytes):
        filename = str(source)
    try:
        fmt = sniff_format(_head(source), filename)
        return _DECODERS[fmt](source, limits=limits, filename=filename)
    except DecodeError as exc:
        message = _without_path(str(exc), source, filename or "upload")
        if message == str(exc):
            raise
        raise type(exc)(message) from exc


def _without_path(message: str, source: Source, name: str) -> str:
    """``message`` with every spelling of ``source``'s path replaced by ``name``."""
    if isinstance(source, bytes):
        return message
    path = Path(source)
    for spelling in sorted({str(source), str(path), str(path.resolve()), str(path.absolute())}, key=len, reverse=True):
        if spelling and spelling != name:
            message = message.replace(spelling, name)
    return message
