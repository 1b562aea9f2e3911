"""The whole clip with the nerve drawn on it, as an H.264 MP4 a browser or a report can play.

:func:`write_overlay_mp4` renders every frame as ``overlay.png`` does (the nerve tinted,
its contour drawn: :func:`gateway.store.files.overlay_rgb`), adds a caption per frame (frame
number, plane, CSA) and encodes them with PyAV's libx264 in ``yuv420p`` (the pixel format
every browser plays), ``+faststart`` so playback can begin before the download ends.
``yuv420p`` needs an even width and height: an odd frame gets one edge column or row
repeated, so the video can be one pixel wider or taller than the clip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from gateway.store.files import overlay_rgb
from ultramn.contract import PLANE_VIEWS

U8 = npt.NDArray[np.uint8]

#: Frame rate of a clip whose file does not give one (frames per second).
DEFAULT_FPS = 25.0
#: libx264 constant rate factor: 18 is visually lossless for B-mode with a coloured overlay.
CRF = "18"


@dataclass(frozen=True)
class OverlayVideo:
    """What was written: the file, its frame count, size (pixels) and rate (frames/s)."""

    path: Path
    n_frames: int
    width: int
    height: int
    fps: float


def frame_captions(result: dict[str, Any] | None, n_frames: int) -> list[str]:
    """One caption per frame from an analysis result: ``"12/24  TW  CSA 8.50 mm^2"``.

    The frame number counts from 1; the area is in mm^2 when the result has a pixel spacing,
    else in px^2 (ASCII: Pillow's built-in font has no superscript two), and is called
    ``CSA`` in a transverse frame, ``area`` in a longitudinal one (the nerve's band, not a
    cross-section); a frame without a reported nerve says ``no nerve``. Without a result (or
    with fewer frames in it than ``n_frames``) the missing captions give the number only.
    """
    frames = (result or {}).get("frames") or []
    out = []
    for i in range(n_frames):
        text = f"{i + 1}/{n_frames}"
        f = frames[i] if i < len(frames) and isinstance(frames[i], dict) else None
        if f is not None:
            plane = f.get("plane") or ""
            name = "area" if PLANE_VIEWS.get(plane) == "longitudinal" else "CSA"
            if not f.get("nerve_present"):
                area = "no nerve"
            elif f.get("csa_mm2") is not None:
                area = f"{name} {f['csa_mm2']:.2f} mm^2"
            else:
                area = f"{name} {f.get('csa_px', 0):.0f} px^2"
            text = f"{text}  {plane}  {area}".rstrip()
        out.append(text)
    return out


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at about 1/28 of the frame height (at least 10 px)."""
    size = max(10, height // 28)
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # a Pillow without FreeType has only the bitmap font
        return ImageFont.load_default()


def _captioned(rgb: U8, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> U8:
    """``rgb`` ``[H,W,3]`` with ``text`` in white on a dark box at the top left."""
    if not text:
        return rgb
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    pad = max(2, rgb.shape[0] // 120)
    right, bottom = draw.textbbox((pad, pad), text, font=font)[2:]
    draw.rectangle((0, 0, right + pad, bottom + pad), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return np.asarray(image, dtype=np.uint8)


def _even(rgb: U8) -> U8:
    """Pad ``[H,W,3]`` to an even height and width by repeating the last row / column."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_overlay_mp4(
    frames: U8,
    masks: U8,
    path: Path,
    fps: float | None = None,
    captions: Sequence[str] | None = None,
) -> OverlayVideo:
    """Encode ``frames`` ``uint8 [N,H,W]`` with ``masks`` ``uint8 [N,H,W]`` (0/1) drawn on them.

    Written to a temporary file beside ``path`` and renamed, so a reader never sees half a
    video and a failed encode leaves nothing. ``fps`` ``None`` (or not a positive number)
    plays at :data:`DEFAULT_FPS`. ``captions`` (one per frame) are drawn at the top left.
    """
    import av

    if frames.ndim != 3 or masks.shape != frames.shape:
        raise ValueError(f"frames {frames.shape} and masks {masks.shape} must both be [N,H,W] of one shape")
    if captions is not None and len(captions) != frames.shape[0]:
        raise ValueError(f"{len(captions)} captions for {frames.shape[0]} frames")
    rate = float(fps) if fps is not None and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    n, h, w = frames.shape
    height, width = h + h % 2, w + w % 2
    font = _font(h)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(tmp), mode="w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": CRF, "preset": "veryfast"}
            for i in range(n):
                rgb = overlay_rgb(frames[i], masks[i])
                if captions is not None:
                    rgb = _captioned(rgb, captions[i], font)
                for packet in stream.encode(av.VideoFrame.from_ndarray(_even(rgb), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return OverlayVideo(path=path, n_frames=n, width=width, height=height, fps=rate)
