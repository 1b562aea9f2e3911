"""Stage ``roi``: find the imaging region of a screen capture; keep its box.

Recorded clips often carry on-screen text, depth markers, icons and black borders around
the B-mode image. The region is found on the clip's temporal maximum image (frames
subsampled to at most ``max_frames``):

1. threshold: pixels brighter than ``threshold`` grey levels;
2. opening with a square of side ``~min(H, W) * text_kernel_frac`` (odd, >= 3): thin
   strokes (text, tick marks, thin lines) vanish, the speckled image stays;
3. in a clip (not a still), solid parts that are on-screen elements (at least
   ``static_part_frac`` of their pixels static over the clip: a grey-scale bar, a filled
   label, a logo) are dropped, so that the next step cannot join them to the image (when
   every part is static, e.g. a frozen clip, none is dropped);
   closing of the gaps between image parts (dark tissue bands split the bright mask),
   then the largest connected region, plus the parts stacked above or below it over its
   columns (a bone's shadow wider than the closing splits the image into its superficial
   tissue and the shadow's deep noise, which the temporal maximum of a long clip makes the
   larger part); the bounding box of these is the ROI;
4. the image's deep part may be dark (acoustic shadow, attenuation) and is then
   indistinguishable from a black border, so the box is extended downwards through rows
   without on-screen elements, up to the next one or the frame's edge (dark rows cost
   nothing; cutting off tissue would distort the geometry the model was trained on). An
   on-screen element is *static* bright content: text and markers do not change between
   frames, while tissue and its noise do (a noise pixel in the deep shadow must not stop
   the extension). A still image has no temporal information: any bright pixel may be one.
   Bright pixels connected to the image region (its ragged lower edge, say) are image, not
   on-screen elements, in clips and stills alike; and on-screen elements are clearly bright
   (``element_level``), while the noise of a deep shadow is dim (in a still, and by chance
   over a few frames, it is as static as text). In a still, on-screen content also sits on
   the screen's black (its dark surroundings have a median of at most ``screen_black``
   grey levels), while a reflector deep in the tissue is ringed by speckle;
5. every side of the box then grows through the lines just outside it (columns beside it,
   rows above and below it, over its span) that are not screen border, up to the first line
   that is (at least ``border_line_frac`` of its pixels look like the screen: dark, at most
   ``threshold`` grey levels, as a frame grabber's noisy black is, or on-screen elements in a
   still, or pixels that do not change in a clip) or the frame's edge. Tissue the bright-part
   analysis left out is taken back: a shadow band that splits a border-free image side by
   side is crossed by speckle and fascia brighter than that. The black margin of a screen
   capture, or the black gap to a second panel, stops the box at once;
6. a box smaller than ``min_area_frac`` of the frame (no clear image) falls back to the
   full frame.

The mask is mapped back into the full frame with this box (postprocess stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from gateway.pipeline.context import Box, ClipContext


@dataclass(frozen=True)
class RoiConfig:
    """ROI detection parameters (grey levels 0-255, fractions of the frame)."""

    enabled: bool = True
    threshold: int = 12
    text_kernel_frac: float = 0.025
    gap_frac: float = 0.05
    min_area_frac: float = 0.15
    max_frames: int = 64
    #: a bright pixel whose value varies by at most this over the clip is static (on screen)
    static_ptp: int = 2
    #: static bright pixels in a row (within the box's width) that make it an on-screen element
    static_row_pixels: int = 2
    #: clips of fewer frames are judged like a still (no usable motion to tell noise from screen content)
    still_frames: int = 3
    #: in a still, bright specks smaller than this (pixels, 8-connected) are noise, not on-screen content
    still_min_element_pixels: int = 6
    #: on-screen content that stops the downward extension is at least this bright (grey level): the
    #: noise of a deep shadow is dimmer, and in a still, or by chance over a few frames, it is static too
    element_level: int = 64
    #: in a clip, a solid part with at least this fraction of static pixels is an on-screen element
    static_part_frac: float = 0.9
    #: a part stacked over the image's columns with at least this fraction of its pixels is image too (in a clip: if moving)
    stacked_part_frac: float = 0.1
    #: in a still, on-screen content sits on the screen's black: the dark pixels around it have a median
    #: grey level at most this (a bright reflector in deep tissue is ringed by speckle, a few levels up)
    screen_black: int = 1
    #: a line beside the box (a column left or right, a row above or below, over the box's span) is
    #: screen border when at least this share of its pixels look like the screen (dark, or on-screen
    #: elements in a still, or unchanging in a clip); the box grows through lines that are not
    border_line_frac: float = 0.9


def _subsample(frames: npt.NDArray[np.uint8], max_frames: int) -> npt.NDArray[np.uint8]:
    n = frames.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    return np.asarray(frames[idx])


def temporal_max(frames: npt.NDArray[np.uint8], max_frames: int) -> npt.NDArray[np.uint8]:
    """Max over (up to ``max_frames`` evenly spaced) frames: ``uint8 [H,W]``."""
    return np.asarray(_subsample(frames, max_frames).max(axis=0))


def is_still(n_frames: int, config: RoiConfig) -> bool:
    """Whether a clip of ``n_frames`` frames is judged like a still image (no usable motion)."""
    return min(n_frames, config.max_frames) < config.still_frames


def on_screen_rows(
    unchanging: npt.NDArray[np.bool_] | None, bright: npt.NDArray[np.bool_], components: npt.NDArray[np.int32], config: RoiConfig
) -> npt.NDArray[np.bool_]:
    """``bool [H,W]`` pixels of on-screen elements: bright and static over the clip.

    ``unchanging``: the pixels whose value varies by at most ``static_ptp`` over the clip
    (:func:`unchanging_pixels`), ``None`` for a still (:func:`is_still`). ``components``: the
    8-connected labels of ``bright``. In a still every bright pixel is static, so size has to
    tell: components of fewer than ``still_min_element_pixels`` pixels are noise.
    """
    if unchanging is None:
        big = np.bincount(components.ravel()) >= config.still_min_element_pixels
        big[0] = False
        return np.asarray(big[components])
    return bright & unchanging


def unchanging_pixels(sub: npt.NDArray[np.uint8], tmax: npt.NDArray[np.uint8], static_ptp: int) -> npt.NDArray[np.bool_]:
    """``bool [H,W]``: pixels of the (subsampled) frames ``sub`` whose value varies by at most
    ``static_ptp`` grey levels (``tmax``: their maximum, :func:`temporal_max`)."""
    return np.asarray((tmax.astype(np.int16) - sub.min(axis=0).astype(np.int16)) <= static_ptp)


def _opening(mask: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.bool_]:
    """Binary opening by a ``k x k`` square, zero outside the frame (= ``ndi.binary_opening``).

    Separable min/max filters: linear in the frame size whatever ``k`` is (the 2D structuring
    element of ``binary_opening`` took seconds to minutes on 1080p-4096 px frames).
    """
    eroded = ndi.minimum_filter(mask.view(np.uint8), size=k, mode="constant", cval=0)
    return np.asarray(ndi.maximum_filter(eroded, size=k, mode="constant", cval=0), dtype=bool)


def _closing(mask: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.bool_]:
    """Binary closing by a ``k x k`` square, zero outside the frame (= ``ndi.binary_closing(border_value=0)``)."""
    dilated = ndi.maximum_filter(mask.view(np.uint8), size=k, mode="constant", cval=0)
    return np.asarray(ndi.minimum_filter(dilated, size=k, mode="constant", cval=0), dtype=bool)


def _odd(value: float, minimum: int = 3) -> int:
    k = max(minimum, round(value))
    return k if k % 2 else k + 1


def find_roi(frames: npt.NDArray[np.uint8], config: RoiConfig = RoiConfig()) -> Box:
    """The imaging region ``(x0, y0, x1, y1)`` of ``uint8 [N,H,W]`` frames (see the module docstring)."""
    _, h, w = frames.shape
    full: Box = (0, 0, w, h)
    if not config.enabled:
        return full
    sub = _subsample(frames, config.max_frames)
    tmax = np.asarray(sub.max(axis=0))
    bright = tmax > config.threshold
    k = _odd(min(h, w) * config.text_kernel_frac)
    solid = _opening(bright, k)
    if not solid.any():
        return full
    components, _ = ndi.label(bright, structure=np.ones((3, 3), bool))
    still = is_still(frames.shape[0], config)
    unchanging = None if still else unchanging_pixels(sub, tmax, config.static_ptp)
    static = on_screen_rows(unchanging, bright, components, config)
    if not still:
        solid = _without_static_parts(solid, static, config.static_part_frac)
    gap = _odd(min(h, w) * config.gap_frac)
    joined = _closing(solid, gap) | solid
    labels, n = ndi.label(joined)
    if n == 0:
        return full
    sizes = ndi.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    region = (labels == int(np.argmax(sizes)) + 1) & solid
    region = _with_stacked_parts(region, np.where(solid, labels, 0), None if still else static, config)
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    # extend down through rows with nothing on screen (dark deep tissue looks like a border)
    static = static & ~_touching(components, region) & (tmax >= config.element_level)
    if still:
        static = _on_black(static, bright, tmax, config.screen_black)
    empty_rows = static[:, x0:x1].sum(axis=1) < (1 if still else config.static_row_pixels)
    while y1 < h and empty_rows[y1]:
        y1 += 1
    # the screen around the image: dark pixels (a frame grabber's black is noise of a few levels), and
    # in a still the text and markers on it, in a clip what does not change
    dark = tmax <= config.threshold
    border = dark | static if unchanging is None else dark | unchanging
    x0, y0, x1, y1 = grow_through_image((x0, y0, x1, y1), border, config.border_line_frac)
    if (x1 - x0) * (y1 - y0) < config.min_area_frac * h * w:
        return full
    return (x0, y0, x1, y1)


def grow_through_image(box: Box, border: npt.NDArray[np.bool_], line_frac: float) -> Box:
    """``box`` ``(x0, y0, x1, y1)`` grown, side by side, through the lines just outside it that
    are not screen border, up to the first that is or the frame's edge.

    ``border``: ``bool [H,W]``, pixels that look like the screen around an image (dark, and
    on-screen elements in a still or unchanging pixels in a clip). A line (a column beside the
    box, a row above or below it, over the box's current span) is border when at least
    ``line_frac`` of its pixels are. Tissue the bright-part analysis left out (the far side of
    a shadow band that splits the image side by side) is not border, so the box takes it back,
    while the black margin, or the black gap to a second panel, stops it at once.
    """
    h, w = border.shape
    x0, y0, x1, y1 = box

    def reach(shares: npt.NDArray[np.float64]) -> int:
        """How many lines, nearest first, are image before the first border line."""
        stops = np.flatnonzero(shares >= line_frac)
        return int(stops[0]) if stops.size else len(shares)

    while True:  # each pass grows every side as far as the current span allows; a grown span may allow more
        before = (x0, y0, x1, y1)
        x0 -= reach(border[y0:y1, :x0].mean(axis=0)[::-1]) if x0 > 0 else 0
        x1 += reach(border[y0:y1, x1:].mean(axis=0)) if x1 < w else 0
        y0 -= reach(border[:y0, x0:x1].mean(axis=1)[::-1]) if y0 > 0 else 0
        y1 += reach(border[y1:, x0:x1].mean(axis=1)) if y1 < h else 0
        if (x0, y0, x1, y1) == before:
            return before


def _without_static_parts(solid: npt.NDArray[np.bool_], static: npt.NDArray[np.bool_], frac: float) -> npt.NDArray[np.bool_]:
    """``solid`` without its connected parts of which at least ``frac`` of the pixels are
    ``static`` (on-screen elements); unchanged when that would leave nothing."""
    labels, n = ndi.label(solid)
    if n < 2:
        return solid
    static_share = np.asarray(ndi.mean(static, labels, index=np.arange(1, n + 1)))
    keep = np.concatenate([[False], static_share < frac])
    if not keep[1:].any():
        return solid
    return np.asarray(keep[labels])


def _with_stacked_parts(
    region: npt.NDArray[np.bool_], parts: npt.NDArray[np.int32], static: npt.NDArray[np.bool_] | None, config: RoiConfig
) -> npt.NDArray[np.bool_]:
    """``region`` plus the ``parts`` (labels, 0 = none) stacked above or below it: image too.

    A dark band across the image (a bone's acoustic shadow) can split it into an upper part
    (the superficial tissue) and a lower one (the shadow's noise, whose temporal maximum
    grows with the clip's length); the largest part alone then drops the other, nerve and
    all. A part joins when it has at least ``stacked_part_frac`` of the region's pixels, at
    least half of its columns lie within the region's and, in a clip (``static`` given), it
    is mostly moving (fewer than ``static_part_frac`` static pixels: not an on-screen element).
    """
    cols = np.flatnonzero(region.any(axis=0))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    size = int(region.sum())
    out = region.copy()
    for sl, label in zip(ndi.find_objects(parts), range(1, int(parts.max()) + 1), strict=False):
        if sl is None:
            continue
        part = parts[sl] == label
        n = int(part.sum())
        if n < config.stacked_part_frac * size or (region[sl] & part).any():
            continue
        px0, px1 = sl[1].start, sl[1].stop
        if min(px1, x1) - max(px0, x0) < 0.5 * (px1 - px0):
            continue
        if static is not None and float(static[sl][part].mean()) >= config.static_part_frac:
            continue
        out[sl] |= part
    return out


def _on_black(
    elements: npt.NDArray[np.bool_], bright: npt.NDArray[np.bool_], tmax: npt.NDArray[np.uint8], black: int
) -> npt.NDArray[np.bool_]:
    """The parts of ``elements`` (8-connected) whose dark surroundings (the non-``bright``
    pixels within 2 px) have a median grey level of at most ``black``: text and markers on the
    screen's black, not reflectors in the speckle of deep tissue (a still has no motion to
    tell them apart)."""
    labels, n = ndi.label(elements, structure=np.ones((3, 3), bool))
    if n == 0:
        return elements
    ring = np.where(bright, 0, ndi.grey_dilation(labels, size=(5, 5)))
    around = np.asarray(ndi.median(tmax, ring, index=np.arange(1, n + 1)), dtype=np.float64)
    keep = np.concatenate([[False], ~(around > black)])  # nan (no dark pixel around): kept
    return np.asarray(keep[labels])


def _touching(components: npt.NDArray[np.int32], region: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Bright pixels (``components``: their 8-connected labels) connected to ``region``: image, not on-screen elements."""
    ids = np.unique(components[region])
    return np.isin(components, ids[ids > 0])


def run(ctx: ClipContext, config: RoiConfig) -> None:
    """Set ``ctx.roi``."""
    ctx.roi = find_roi(ctx.require_clip().frames, config)
