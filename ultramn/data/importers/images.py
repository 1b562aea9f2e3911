"""Import folders of still images (PNG/BMP/JPEG/TIFF) with mask images of the same names.

Conventions (docs/dataset.md):

- ``IMAGES/<stem>.<ext>`` pairs with ``MASKS/<stem><mask_suffix>.<any image ext>``; with a
  suffix, images and masks may share one folder (stems ending with it are masks).
- Masks: binary (any nonzero = nerve) or multi-class, where ``mask_value`` marks the
  nerve; palette PNGs keep their indices, colour masks use the maximum channel.
- ``clip_pattern`` (regex on the file name; first group) groups frames into clips, sorted
  naturally; without it each image is a clip of one frame, its id the stem.
- ``participant_pattern`` (regex on the file name; first group) gives the participant;
  without it each clip is its own participant.
- Clip and participant ids are prefixed with the dataset name (``<dataset>-<key>``), so
  importing two folders with the same file names into one dataset keeps both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ultramn.data.decoders import (
    IMAGE_FORMATS,
    SNIFF_BYTES,
    DecodeError,
    DecodeLimits,
    U8Array,
    _pages_to_frames,
    _pil_pages,
    natural_key,
    sniff_format,
)
from ultramn.data.importers.common import (
    IMAGE_EXTENSIONS,
    ImportedClip,
    ImportOptions,
    ImportReport,
    check_pair,
    compile_pattern,
    guarded,
    list_files,
    mask_from_image,
    match_key,
    progress,
    require_dir,
    safe_id,
    write_import,
)
from ultramn.errors import UserInputError

#: Folder names too generic to serve as a dataset name (their parent's name is used).
GENERIC_FOLDER_NAMES = frozenset({"images", "image", "imgs", "img", "frames", "data", "png", "jpg"})


@dataclass(frozen=True)
class ImageGroup:
    """The frames of one clip: image paths (natural order) and their mask paths."""

    key: str
    participant: str
    images: tuple[Path, ...]
    masks: tuple[Path, ...]


def default_dataset_name(images_dir: Path) -> str:
    """The images folder's name, or its parent's when the name is generic (``images`` ...)."""
    resolved = images_dir.resolve()
    name = resolved.name
    if name.lower() in GENERIC_FOLDER_NAMES and resolved.parent.name:
        name = resolved.parent.name
    return safe_id(name)


def _refuse_shared_stems(files: list[Path], option: str, what: str) -> None:
    """A :class:`UserInputError` when two of ``files`` differ only in extension (``a.png``, ``a.jpg``)."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for path in files:
        by_stem[path.stem].append(path.name)
    shared = [names for names in by_stem.values() if len(names) > 1]
    if shared:
        shown = "; ".join(" and ".join(names) for names in shared[:3]) + (" ..." if len(shared) > 3 else "")
        raise UserInputError(f"{option}: {shown} share a name ({what}): keep one of each")


def group_images(
    images_dir: Path,
    masks_dir: Path,
    mask_suffix: str = "",
    clip_pattern: str | None = None,
    participant_pattern: str | None = None,
) -> tuple[list[ImageGroup], list[str]]:
    """Pair images with masks and group them into clips; returns (groups, images without masks)."""
    require_dir(images_dir, "--images")
    require_dir(masks_dir, "--masks")
    if not mask_suffix and images_dir.resolve() == masks_dir.resolve():
        raise UserInputError("--masks is the --images folder: give --mask-suffix (e.g. _mask) so that masks are not read as images")
    images = [p for p in list_files(images_dir, IMAGE_EXTENSIONS) if not (mask_suffix and p.stem.endswith(mask_suffix))]
    if not images:
        raise UserInputError(f"--images: no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files in {images_dir}")
    _refuse_shared_stems(images, "--images", "one mask and one clip id")
    mask_files: dict[str, list[Path]] = defaultdict(list)
    for path in list_files(masks_dir, IMAGE_EXTENSIONS):
        mask_files[path.stem].append(path)
    masks = {stem: paths[0] for stem, paths in mask_files.items()}
    clip_re = compile_pattern(clip_pattern, "--clip-pattern")
    part_re = compile_pattern(participant_pattern, "--participant-pattern")
    frames: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    participants: dict[str, str] = {}
    unmatched: list[str] = []
    for image in images:
        mask = masks.get(f"{image.stem}{mask_suffix}")
        if mask is None:
            unmatched.append(image.name)
            continue
        _refuse_shared_stems(mask_files[mask.stem], "--masks", f"the mask of {image.name}")
        key = match_key(clip_re, image.name, image.stem, "--clip-pattern")
        participant = match_key(part_re, image.name, key, "--participant-pattern")
        if participants.setdefault(key, participant) != participant:
            raise UserInputError(f"clip {key!r} mixes participants {participants[key]!r} and {participant!r}: check --participant-pattern")
        frames[key].append((image, mask))
    groups = []
    for key in sorted(frames, key=natural_key):
        pairs = sorted(frames[key], key=lambda pair: natural_key(pair[0].name))
        groups.append(ImageGroup(key, participants[key], tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))
    return groups, unmatched


def _raw_page(path: Path, limits: DecodeLimits) -> npt.NDArray[Any]:
    """The one page of a still image, grey ``[H,W]`` and upright, as the decoder reads it:
    ``uint8`` for 8-bit and colour images, the stored numbers of 16-bit and float ones."""
    try:
        with path.open("rb") as fh:
            fmt = sniff_format(fh.read(SNIFF_BYTES), path.name)
            if fmt not in IMAGE_FORMATS and fmt != "tiff":
                raise DecodeError(f"{path}: expected a still image, found {fmt}")
            fh.seek(0)
            pages = _pil_pages(fh, str(path), limits, max_frames=limits.max_frames)
    except OSError as exc:
        raise DecodeError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if len(pages) != 1:
        raise DecodeError(f"{path}: {len(pages)} pages; use one image per frame")
    return pages[0]


def load_group(group: ImageGroup, options: ImportOptions, dataset: str) -> ImportedClip:
    """Decode one group's images and masks into an :class:`ImportedClip` (``uint8 [T,H,W]``).

    16-bit and float frames are scaled to grey levels once over the whole clip, as the
    decoder does for the pages of a TIFF or the frames of a ZIP upload, so a clip's frames
    keep their relative brightness (a fade survives).
    """
    pages: list[npt.NDArray[Any]] = []
    masks: list[U8Array] = []
    for image_path, mask_path in zip(group.images, group.masks, strict=True):
        page = _raw_page(image_path, options.limits)
        mask = mask_from_image(mask_path, options.mask_value)[None]
        check_pair(page[None], mask, image_path.name)
        if pages and page.shape != pages[0].shape:
            (h, w), (h0, w0) = page.shape, pages[0].shape
            raise DecodeError(f"clip {group.key}: {image_path.name} is {w}x{h}, other frames {w0}x{h0}")
        options.limits.check_clip(len(pages) + 1, *page.shape)
        pages.append(page)
        masks.append(mask)
    return ImportedClip(
        clip_id=f"{dataset}-{group.key}",
        participant_id=f"{dataset}-{group.participant}",
        frames=_pages_to_frames(pages),
        masks=np.concatenate(masks),
        origin=group.images[0].name if len(group.images) == 1 else f"clip {group.key!r} ({group.images[0].name}, ...)",
    )


def import_images(
    images_dir: Path,
    masks_dir: Path,
    options: ImportOptions,
    *,
    dataset: str | None = None,
    mask_suffix: str = "",
    clip_pattern: str | None = None,
    participant_pattern: str | None = None,
) -> ImportReport:
    """Import a folder of images + masks into ``options.out``; see the module doc for the conventions."""
    name = safe_id(dataset) if dataset else default_dataset_name(images_dir)
    groups, unmatched = group_images(images_dir, masks_dir, mask_suffix, clip_pattern, participant_pattern)
    if unmatched and not options.skip_bad:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise UserInputError(
            f"{len(unmatched)} image(s) without a mask in {masks_dir} (expected <stem>{mask_suffix}.png etc.): "
            f"{shown} (use --skip-bad to skip them)"
        )
    report = ImportReport(skipped=[f"{u}: no mask" for u in unmatched])
    clips = guarded(
        progress(groups, f"import {name}"),
        lambda g: load_group(g, options, name),
        lambda g: f"clip {g.key}",
        report,
        options.skip_bad,
    )
    return write_import(clips, options, source=f"images:{name}", report=report)
