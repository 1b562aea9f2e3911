"""Import video files (MP4/AVI/MOV/MKV/WebM, animated GIF) with per-frame masks beside them.

Mask convention for ``VIDEOS/clip.mp4`` (``_mask`` is ``mask_suffix``), looked up in the
masks folder (default: the videos folder), first match wins:

- ``clip_mask/`` — a folder of mask images, one per frame, natural order;
- ``clip_mask.npy`` / ``clip_mask.npz`` — label array ``[T,H,W]``;
- ``clip_mask.mp4`` / ``.avi`` / ``.gif`` / ... — a mask video, grey >= 128 is nerve;
- ``clip_mask.tif`` — a multi-page TIFF of labels.

The mask must have as many frames as the video, of the same size. Files whose stem ends
with ``mask_suffix`` are masks, never clips. Participant id: ``participant_pattern`` on
the file name (first group), default the stem (each video its own participant).
"""

from __future__ import annotations

from pathlib import Path

from ultramn.data.decoders import DecodeError, decode
from ultramn.data.importers.common import (
    VIDEO_EXTENSIONS,
    VIDEO_FORMATS,
    ImportedClip,
    ImportOptions,
    ImportReport,
    clip_with_masks,
    compile_pattern,
    find_mask,
    guarded,
    list_files,
    match_key,
    progress,
    require_dir,
    safe_id,
    write_import,
)
from ultramn.errors import UserInputError


def load_video_clip(video: Path, masks_dir: Path, options: ImportOptions, mask_suffix: str, participant: str, dataset: str) -> ImportedClip:
    """Decode ``video`` and its mask into an :class:`ImportedClip`."""
    mask_path = find_mask(masks_dir, video.stem, mask_suffix)
    if mask_path is None:
        raise DecodeError(
            f"{video.name}: no mask found (expected {video.stem}{mask_suffix}/ folder, "
            f"{video.stem}{mask_suffix}.npy/.npz/.mp4/.avi/.gif or .tif in {masks_dir})"
        )
    decoded = decode(video, limits=options.limits)
    if decoded.format not in VIDEO_FORMATS:
        raise DecodeError(f"{video.name}: expected a video, found {decoded.format}")
    return clip_with_masks(
        decoded,
        mask_path,
        options,
        video.name,
        clip_id=f"{dataset}-{video.stem}",
        participant_id=f"{dataset}-{participant}",
        origin=video.name,
    )


def import_videos(
    videos_dir: Path,
    options: ImportOptions,
    *,
    masks_dir: Path | None = None,
    mask_suffix: str = "_mask",
    dataset: str | None = None,
    participant_pattern: str | None = None,
) -> ImportReport:
    """Import every video in ``videos_dir`` (not recursive) with its mask into ``options.out``."""
    require_dir(videos_dir, "--videos")
    mask_root = require_dir(masks_dir, "--masks") if masks_dir is not None else videos_dir
    if not mask_suffix:
        raise UserInputError("--masks-suffix must not be empty")
    name = safe_id(dataset) if dataset else safe_id(videos_dir.resolve().name)
    videos = [v for v in list_files(videos_dir, VIDEO_EXTENSIONS) if not v.stem.endswith(mask_suffix)]
    if not videos:
        raise UserInputError(f"--videos: no {'/'.join(e[1:] for e in VIDEO_EXTENSIONS)} files in {videos_dir}")
    part_re = compile_pattern(participant_pattern, "--participant-pattern")
    participants = {v: match_key(part_re, v.name, v.stem, "--participant-pattern") for v in videos}
    report = ImportReport()
    clips = guarded(
        progress(videos, f"import {name}"),
        lambda v: load_video_clip(v, mask_root, options, mask_suffix, participants[v], name),
        lambda v: v.name,
        report,
        options.skip_bad,
    )
    return write_import(clips, options, source=f"video:{name}", report=report)
