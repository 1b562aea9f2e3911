"""Contact sheet of synthetic clips: rows = planes, columns = quality grade x (first, last frame).

The nerve mask's contour is drawn on top in yellow. Used by ``ultramn synth --preview``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from ultramn.contract import PLANE_NAMES, PLANES, QUALITY_GRADES
from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, generate_clip
from ultramn.data.synth.psf import warm_cache

U8 = npt.NDArray[np.uint8]
PREVIEW_FRAMES = 16
CONTOUR_RGB = (255, 215, 0)
HEADER_PX = 22
LABEL_PX = 150
SIDE_OF_PLANE = {"TW": "R", "TF": "L", "LW": "R", "LF": "L"}


def contour(mask: U8) -> npt.NDArray[np.bool_]:
    """Boundary pixels of a binary mask ``[H, W]`` (inside pixels with an outside 4-neighbour)."""
    m = mask.astype(bool)
    pad = np.pad(m, 1, constant_values=False)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~interior


def overlay(frame: U8, mask: U8) -> U8:
    """``uint8 [H, W, 3]``: the grey frame with the mask contour in :data:`CONTOUR_RGB`."""
    rgb = np.repeat(frame[..., None], 3, axis=2)
    rgb[contour(mask)] = CONTOUR_RGB
    return rgb


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_preview(config: SynthConfig, participant: int = 0) -> Image.Image:
    """The contact sheet (RGB) for ``participant`` of ``config``."""
    warm_cache()
    cfg = replace(config, frames=PREVIEW_FRAMES)
    h, w = cfg.height, cfg.width
    cols = [(g, f) for g in QUALITY_GRADES for f in (0, PREVIEW_FRAMES - 1)]
    sheet = Image.new("RGB", (LABEL_PX + w * len(cols), HEADER_PX + h * len(PLANES)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for j, (grade, f) in enumerate(cols):
        draw.text((LABEL_PX + j * w + 4, 4), f"{grade}  frame {f}", fill=(230, 230, 230), font=font)
    for i, plane in enumerate(PLANES):
        side = SIDE_OF_PLANE[plane]
        y = HEADER_PX + i * h
        draw.text((4, y + 4), f"{plane} ({side})", fill=(255, 255, 255), font=_font(16))
        for k, line in enumerate(PLANE_NAMES[plane].replace(" (", "\n(").split("\n")):
            draw.text((4, y + 26 + 16 * k), line, fill=(180, 180, 180), font=font)
        for gi, grade in enumerate(QUALITY_GRADES):
            clip = generate_clip(ClipSpec(cfg, participant, plane, side, grade=grade))
            if gi == 0:
                acq = clip.acquisition
                info = f"depth {acq.depth_mm:.0f} mm\n{acq.pixel_spacing_mm:.3f} mm/px\n{acq.fps:.0f} fps"
                draw.multiline_text((4, y + 70), info, fill=(150, 150, 150), font=font)
            for fi, f in enumerate((0, PREVIEW_FRAMES - 1)):
                tile = overlay(clip.arrays.frames[f], clip.arrays.masks[f])
                sheet.paste(Image.fromarray(tile), (LABEL_PX + (2 * gi + fi) * w, y))
    return sheet


def write_preview(config: SynthConfig, path: Path) -> Path:
    """Render and save the contact sheet as PNG (palette-quantised to stay small)."""
    sheet = render_preview(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    small = sheet.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path
