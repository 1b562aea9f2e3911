"""Files of an analysis under the data folder, and PNG rendering on demand.

Layout: ``<data_dir>/uploads/<id><ext>`` (the upload as received),
``<data_dir>/masks/<id>.npz`` (compressed: ``masks`` ``uint8 [N,H,W]`` 0/1 in original
frame geometry, ``plane_probs`` ``float32 [N,4]``, ``roi`` ``int64 [4]`` = x0,y0,x1,y1) and,
once asked for, ``<data_dir>/overlays/<id>.mp4`` (the clip with its masks drawn on it,
:mod:`gateway.store.overlay_video`; removed whenever the masks are written again).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage as ndi

from gateway.store.cache import ArrayCache
from ultramn.data.decoders import DEFAULT_LIMITS, DecodedClip, DecodeLimits, decode

U8 = npt.NDArray[np.uint8]

#: Overlay colours (RGB): nerve tint and contour.
TINT = np.array([255, 210, 0], dtype=np.float32)
CONTOUR = np.array([255, 40, 40], dtype=np.uint8)


def data_dir_problem(root: Path) -> str | None:
    """Why the gateway cannot keep its data under ``root`` (not a folder, not writable), or ``None``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{root} cannot hold the gateway's data ({exc.strerror or exc})"
    return None


class FileStore:
    """Paths and file operations for uploads and masks.

    Decoded uploads and mask archives read for the viewer's routes are kept in an
    :class:`ArrayCache` of ``cache_bytes`` (``ULTRAMN_FRAME_CACHE_BYTES``).
    """

    def __init__(self, root: Path, cache_bytes: int = 512 * 1024**2) -> None:
        self.root = root
        self.cache = ArrayCache(cache_bytes)
        self.uploads = root / "uploads"
        self.masks = root / "masks"
        self.overlays = root / "overlays"
        for folder in (self.uploads, self.masks, self.overlays):
            folder.mkdir(parents=True, exist_ok=True)
        # one overlay video is encoded at a time: it is CPU work beside the inference server
        self._overlay_lock = threading.Lock()

    def remove_leftovers(self) -> int:
        """Delete what a killed process left half-written: upload staging files
        (``uploads/.<id>.part``), mask archives being saved (``masks/*.tmp.npz``), overlay
        videos being encoded (``overlays/.*.tmp.mp4``) and batch staging folders
        (``batches/.<id>/``). Call at start-up, before any request: the data folder belongs to
        one gateway process (as its ``running`` jobs do). Returns the count."""
        found = [*self.uploads.glob(".*.part"), *self.masks.glob("*.tmp.npz"), *self.overlays.glob(".*.tmp.mp4")]
        batches = self.root / "batches"
        folders = [p for p in batches.glob(".*") if p.is_dir()] if batches.is_dir() else []
        for path in found:
            path.unlink(missing_ok=True)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return len(found) + len(folders)

    def upload_path(self, job_id: str, ext: str) -> Path:
        """Where the upload of ``job_id`` lives."""
        return self.uploads / f"{job_id}{ext}"

    def staging_path(self, job_id: str) -> Path:
        """Where an upload is written while it streams in."""
        return self.uploads / f".{job_id}.part"

    def mask_path(self, job_id: str) -> Path:
        """The compressed mask archive of ``job_id``."""
        return self.masks / f"{job_id}.npz"

    def overlay_video_path(self, job_id: str) -> Path:
        """The overlay video of ``job_id`` (made on the first request for it)."""
        return self.overlays / f"{job_id}.mp4"

    def save_masks(self, job_id: str, masks: U8, plane_probs: npt.NDArray[np.float32], roi: tuple[int, int, int, int]) -> Path:
        """Write the archive atomically (temporary file, then rename); an overlay video made
        from earlier masks is removed."""
        path = self.mask_path(job_id)
        tmp = path.with_suffix(".tmp.npz")
        try:
            np.savez_compressed(
                tmp, masks=masks.astype(np.uint8), plane_probs=plane_probs.astype(np.float32), roi=np.asarray(roi, np.int64)
            )
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not keep a half-written archive
            raise
        self.overlay_video_path(job_id).unlink(missing_ok=True)
        return path

    def load_masks(self, job_id: str) -> U8:
        """``uint8 [N,H,W]`` 0/1 masks (cached); ``FileNotFoundError`` when absent."""

        def read() -> U8:
            with np.load(self.mask_path(job_id)) as data:
                return np.asarray(data["masks"], dtype=np.uint8)

        return self.cache.get(f"masks:{job_id}", read, lambda masks: int(masks.nbytes))

    def overlay_video(self, job_id: str, ext: str, limits: DecodeLimits = DEFAULT_LIMITS, result: dict[str, Any] | None = None) -> Path:
        """The overlay video of ``job_id``, encoded on the first call (captions from ``result``).

        ``FileNotFoundError`` when the masks or the upload are gone, or when the masks were
        written again (or deleted) while the video was being made: a video is never kept
        that does not show the current masks. The decoder's errors pass through.
        """
        from gateway.store.overlay_video import frame_captions, write_overlay_mp4

        path = self.overlay_video_path(job_id)
        with self._overlay_lock:
            if path.is_file():
                return path
            masks_file = self.mask_path(job_id)
            stamp = masks_file.stat().st_mtime_ns
            masks = self.load_masks(job_id)
            clip = self.load_clip(job_id, ext, limits)
            if clip.frames.shape != masks.shape:
                raise FileNotFoundError(f"masks of {job_id} do not match its upload ({masks.shape} vs {clip.frames.shape})")
            write_overlay_mp4(clip.frames, masks, path, clip.fps, frame_captions(result, clip.n_frames))
            try:
                current = masks_file.stat().st_mtime_ns == stamp and self.upload_path(job_id, ext).is_file()
            except FileNotFoundError:
                current = False
            if not current:
                path.unlink(missing_ok=True)
                raise FileNotFoundError(f"the analysis {job_id} changed while its overlay video was made")
        return path

    def load_clip(self, job_id: str, ext: str, limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedClip:
        """The upload of ``job_id`` decoded (cached); the decoder's errors and ``OSError`` pass through."""
        return self.cache.get(
            f"clip:{job_id}", lambda: decode(self.upload_path(job_id, ext), f"upload{ext}", limits), lambda clip: int(clip.frames.nbytes)
        )

    def delete(self, job_id: str, ext: str) -> None:
        """Remove every file of ``job_id`` (missing files are fine) and forget its cached arrays."""
        for path in (self.upload_path(job_id, ext), self.mask_path(job_id), self.staging_path(job_id), self.overlay_video_path(job_id)):
            path.unlink(missing_ok=True)
        self.cache.drop(f"masks:{job_id}", f"clip:{job_id}")


def png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """Encode ``uint8 [H,W]`` or ``[H,W,3]`` as PNG."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def mask_png(mask: U8) -> bytes:
    """A binary mask ``[H,W]`` as a black/white PNG (nerve = 255)."""
    return png_bytes(np.where(mask > 0, 255, 0).astype(np.uint8))


def overlay_rgb(frame: U8, mask: U8, alpha: float = 0.35) -> U8:
    """The grey frame ``[H,W]`` as ``uint8 [H,W,3]`` RGB with the nerve tinted and its contour drawn."""
    rgb = np.repeat(frame[..., None], 3, axis=2).astype(np.float32)
    inside = mask > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * TINT
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    edge = inside & ~ndi.binary_erosion(inside, iterations=1, border_value=0)
    out[edge] = CONTOUR
    return out


def overlay_png(frame: U8, mask: U8, alpha: float = 0.35) -> bytes:
    """:func:`overlay_rgb` as PNG."""
    return png_bytes(overlay_rgb(frame, mask, alpha))
