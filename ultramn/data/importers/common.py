"""What every importer shares: options, mask loading, clip writing, the manifest and splits.

An importer yields :class:`ImportedClip` objects (one clip's frames and masks plus its
ids); :func:`write_import` writes each under ``OUT/clips/<clip_id>.npz``, merges the rows
into ``OUT/manifest.csv`` (a re-imported ``clip_id`` replaces the old row) and re-draws the
participant-level splits of the whole manifest. It commits all or nothing: an import that
fails or is interrupted leaves the dataset's clip files and manifest as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import shutil
import sys
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ultramn.contract import PLANES, SIDES
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.decoders import (
    DEFAULT_LIMITS,
    DecodedClip,
    DecodeError,
    DecodeLimits,
    decode,
    natural_key,
    npz_member_shape,
    sniff_format,
)
from ultramn.data.manifest import MANIFEST_NAME, ClipRecord, ManifestError, merge_records, read_manifest, write_manifest
from ultramn.data.splits import DEFAULT_RATIOS, SplitError, assign_splits, validate_ratios
from ultramn.errors import UserInputError, folder_problem, out_path_problem
from ultramn.measure.spacing import is_anisotropic, pixel_spacing_problem

U8Array = npt.NDArray[np.uint8]
T = TypeVar("T")

#: Folder (under the dataset root) that holds the clip files.
CLIPS_DIR = "clips"
#: Name prefix of the folder (under ``clips/``) an import stages its clip files in until it commits.
STAGING_PREFIX = ".importing-"
#: Still-image file extensions the importers pick up.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
#: Video file extensions the video importer picks up.
#: Clip files of many frames that ``ultramn import video`` takes (an animated GIF is a cine loop).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif")
#: Decoded formats of those files (:data:`ultramn.data.decoders.Format`).
VIDEO_FORMATS: frozenset[str] = frozenset({"video", "gif"})
#: Grey level at which mask *videos* (lossy codecs) are thresholded.
MASK_VIDEO_THRESHOLD = 128

#: Highest ``--fps`` taken (ultrasound cine runs at up to a few hundred frames per second).
MAX_FPS = 1000.0

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
#: Latin letters that Unicode does not decompose into an ASCII letter and a mark.
_LATIN_FOLDS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "Th",
        "ð": "d",
        "Ð": "D",
        "ı": "i",
    }
)


@dataclass(frozen=True)
class ImportOptions:
    """Options every importer takes.

    - ``plane`` / ``side``: applied to every imported clip (``""`` = unknown).
    - ``pixel_spacing_mm``: overrides the spacing found in the files (mm per pixel).
    - ``fps``: overrides the frame rate found in the files (frames per second; stills keep none).
    - ``mask_value``: the label that marks the nerve in multi-class masks; ``None`` = any nonzero.
    - ``skip_bad``: report and skip unreadable or inconsistent inputs instead of stopping.
    """

    out: Path
    plane: str = ""
    side: str = ""
    pixel_spacing_mm: float | None = None
    fps: float | None = None
    mask_value: int | None = None
    split_seed: int = 0
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    skip_bad: bool = False
    limits: DecodeLimits = field(default=DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        if self.plane not in ("", *PLANES):
            raise UserInputError(f"--plane must be one of {', '.join(PLANES)}, not {self.plane!r}")
        if self.side not in ("", *SIDES):
            raise UserInputError(f"--side must be one of {', '.join(SIDES)}, not {self.side!r}")
        if self.pixel_spacing_mm is not None and (problem := pixel_spacing_problem(self.pixel_spacing_mm)):
            raise UserInputError(f"--pixel-spacing {problem}")
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS):
            raise UserInputError(f"--fps must be a frame rate in (0, {MAX_FPS:g}] frames per second, not {self.fps:g}")
        if self.mask_value is not None and not 0 < self.mask_value < 2**16:
            raise UserInputError(f"--mask-value must be a positive label, not {self.mask_value}")
        try:  # before any input is read, not after the last
            validate_ratios(self.ratios)
        except SplitError as exc:
            raise UserInputError(f"--ratios: {exc}") from exc
        if self.out.exists() and not self.out.is_dir():
            raise UserInputError(f"--out: {self.out} is a file, not a dataset folder")
        if (problem := out_path_problem(self.out, folder=True)) is not None:  # under a file, or unwritable
            raise UserInputError(f"--out {self.out}: {problem}")


@dataclass(frozen=True)
class ImportedClip:
    """One clip ready to be written: ``frames`` and ``masks`` are ``uint8 [T,H,W]``, masks 0/1."""

    clip_id: str
    participant_id: str
    frames: U8Array
    masks: U8Array
    fps: float | None = None
    pixel_spacing_mm: float | None = None
    side: str = ""
    plane: str = ""
    #: ``(x, y)`` mm/px when the file gave both (``pixel_spacing_mm`` is then their mean).
    pixel_spacing_xy_mm: tuple[float, float] | None = None
    #: The decoder's notes on this clip (ignored metadata, anisotropic pixels, ...); none about
    #: the file's pixel spacing when ``--pixel-spacing`` gives it.
    warnings: tuple[str, ...] = ()
    #: The input it came from, for messages (a file name; never written to the manifest).
    origin: str = ""


@dataclass
class ImportReport:
    """What an import did: clips written, inputs skipped (with reasons), notes on written clips, empty masks."""

    written: list[ClipRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    empty_masks: list[str] = field(default_factory=list)
    manifest: Path | None = None
    all_records: list[ClipRecord] = field(default_factory=list)


def _hashed_run(match: re.Match[str]) -> str:
    """A run of characters with no ASCII spelling, as 8 hex digits of its UTF-8 SHA-1, set off
    by ``_`` from a letter or digit beside it (``患者01`` -> ``d8025570_01``)."""
    text, start, end = match.string, match.start(), match.end()
    lead = "_" if start > 0 and text[start - 1].isalnum() else ""
    trail = "_" if end < len(text) and text[end].isalnum() else ""
    return f"{lead}{hashlib.sha1(match.group().encode()).hexdigest()[:8]}{trail}"


def safe_id(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]``, for ids and file names.

    Accented Latin letters lose their accents (``Müller`` -> ``Muller``, ``Søren`` -> ``Soren``);
    a run of other non-ASCII letters and digits (``患者``) becomes 8 hex digits of its hash, so
    names in other scripts stay distinct instead of all becoming ``_``; any other run of
    characters outside the set (spaces, punctuation) becomes ``_``. ASCII names are unchanged
    by the first two steps.
    """
    folded = "".join(
        c if c.isascii() or unicodedata.category(c)[0] in "LN" else " "  # other scripts' punctuation, spaces, symbols
        for c in unicodedata.normalize("NFKD", text.translate(_LATIN_FOLDS))
        if not unicodedata.combining(c)
    )
    cleaned = _SAFE_ID.sub("_", _NON_ASCII.sub(_hashed_run, folded)).strip("._")
    if not cleaned:
        raise UserInputError(f"cannot build an id from {text!r}")
    return cleaned


def require_dir(path: Path, option: str) -> Path:
    """``path`` if it is a folder, else a :class:`UserInputError` naming ``option``."""
    if (problem := folder_problem(path)) is not None:
        raise UserInputError(f"{option}: {problem}")
    return path


def list_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """Files directly in ``folder`` with one of ``extensions`` (case-insensitive), naturally sorted."""
    exts = {e.lower() for e in extensions}
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def compile_pattern(pattern: str | None, option: str) -> re.Pattern[str] | None:
    """The compiled regex, or a :class:`UserInputError` naming ``option``."""
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UserInputError(f"{option}: invalid regular expression {pattern!r}: {exc}") from exc


def match_key(pattern: re.Pattern[str] | None, name: str, default: str, option: str) -> str:
    """The first group of ``pattern`` searched in ``name`` (the whole match if no group); ``default`` without pattern."""
    if pattern is None:
        return default
    m = pattern.search(name)
    if m is None:
        raise UserInputError(f"{option} {pattern.pattern!r} does not match the file name {name!r}")
    key = m.group(1) if pattern.groups else m.group(0)
    if not key:
        raise UserInputError(f"{option} {pattern.pattern!r} matched an empty id in {name!r}")
    return key


# ---------------------------------------------------------------------------------------
# masks


#: A lossy (JPEG) mask's pixel is nerve when it is within this many levels of ``--mask-value``.
LOSSY_MASK_TOLERANCE = 32


def mask_from_image(path: Path, mask_value: int | None) -> U8Array:
    """A mask image -> ``uint8 [H,W]`` of 0/1 (labels as :func:`mask_labels_from_image` reads them).

    Lossless images: :func:`binarize`. JPEG masks carry compression ringing around every
    edge, so exact values mean nothing: nerve is grey level >= 128 (as in mask videos), or
    within :data:`LOSSY_MASK_TOLERANCE` of ``mask_value`` when one is given.
    """
    labels, lossy = mask_labels_from_image(path)
    if not lossy:
        return binarize(labels, mask_value)
    if mask_value is None:
        return (labels >= MASK_VIDEO_THRESHOLD).astype(np.uint8)
    return (np.abs(labels.astype(np.int64) - mask_value) <= LOSSY_MASK_TOLERANCE).astype(np.uint8)


def mask_labels_from_image(path: Path) -> tuple[U8Array, bool]:
    """Label values of a mask image, ``uint16-safe [H,W]`` as stored (palette indices kept),
    and whether the file is lossy (JPEG).

    Grey and palette (``P``) images give their stored values; colour masks give the
    maximum over the colour channels (alpha ignored), so a red-on-black mask works. An
    EXIF orientation is applied, as for the images themselves.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with path.open("rb") as fh, Image.open(fh) as opened:  # a file object, as the decoder reads images (see load_mask_stack)
            lossy = opened.format == "JPEG"
            labels = _page_labels(ImageOps.exif_transpose(opened))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"{path}: unreadable mask image ({exc})") from exc
    return labels, lossy


def _page_labels(im: Any) -> npt.NDArray[Any]:
    """One mask image or TIFF page (a Pillow image) -> labels ``[H,W]``: grey and palette
    values as stored, the maximum over the colour channels of colour modes. Alpha is no
    label, but a fully transparent pixel is background whatever colour it stores (editors
    often keep white there)."""
    mode = im.mode
    if mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(im.convert("RGBA" if mode == "RGBA" else "LA"))
        arr = np.where(rgba[..., -1:] == 0, 0, rgba[..., :-1])
    elif mode in ("RGB", "CMYK", "YCbCr"):
        arr = np.asarray(im.convert("RGB"))
    else:
        arr = np.asarray(im)
    return np.asarray(arr.max(axis=-1) if arr.ndim == 3 else arr)


def binarize(labels: npt.NDArray[np.generic], mask_value: int | None) -> U8Array:
    """``1`` where ``labels == mask_value`` (or ``!= 0`` when ``mask_value`` is ``None``), else ``0``."""
    hit = labels != 0 if mask_value is None else labels == mask_value
    return hit.astype(np.uint8)


def load_mask_stack(path: Path, mask_value: int | None, limits: DecodeLimits) -> U8Array:
    """A clip's masks, ``uint8 [T,H,W]`` of 0/1, from any supported mask source.

    - a folder of mask images (one per frame, natural order) or one mask image;
    - ``.npy`` / ``.npz`` (``masks`` or the only array) of labels ``[T,H,W]`` or ``[H,W]``;
    - a multi-page TIFF of labels;
    - a mask video (``.mp4``/``.avi``/...) or animated GIF: grey level >= 128 is nerve
      (``mask_value`` unused).
    """
    if path.is_dir():
        files = list_files(path, IMAGE_EXTENSIONS)
        if not files:
            raise DecodeError(f"{path}: mask folder without images")
        frames = [mask_from_image(f, mask_value) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise DecodeError(f"{path}: mask images differ in size")
        return np.stack(frames)
    fmt = sniff_format(_read_head(path), path.name)
    if fmt in VIDEO_FORMATS:
        decoded = decode(path, limits=limits)
        return (decoded.frames >= MASK_VIDEO_THRESHOLD).astype(np.uint8)
    if fmt in ("npy", "npz", "zip"):
        return _mask_from_array_file(path, fmt, mask_value, limits)
    if fmt == "tiff":
        from PIL import Image, ImageOps, ImageSequence

        try:
            # Opened from a file object, as the decoder opens TIFF frames: Pillow 13 opened by path
            # turns a page with an Orientation tag wrongly, so the mask would not match its frames.
            with path.open("rb") as fh, Image.open(fh) as im:
                pages = [binarize(_page_labels(ImageOps.exif_transpose(p)), mask_value) for p in ImageSequence.Iterator(im)]
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DecodeError(f"{path}: unreadable mask TIFF ({exc})") from exc
        if len({page.shape for page in pages}) != 1:
            sizes = sorted({f"{p.shape[1]}x{p.shape[0]}" for p in pages})
            raise DecodeError(f"{path}: mask TIFF pages differ in size ({', '.join(sizes)})")
        return np.stack(pages)
    if fmt in ("png", "jpeg", "bmp"):
        return mask_from_image(path, mask_value)[None]
    raise DecodeError(f"{path}: {fmt} is not a mask format")


def _read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(512)


def _mask_from_array_file(path: Path, fmt: str, mask_value: int | None, limits: DecodeLimits) -> U8Array:
    """Labels from ``.npy`` / ``.npz``; the shape the header declares is checked against
    ``limits`` before the array is read (a damaged header may declare terabytes)."""
    try:
        if fmt == "npy":
            with path.open("rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                _check_mask_shape(path, tuple(read_header(fh)[0]), limits)
                fh.seek(0)
                arr = np.load(fh, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.keys())
                key = "masks" if "masks" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DecodeError(f"{path}: NPZ with arrays {keys} but none called 'masks'")
                member = f"{key}.npy" if f"{key}.npy" in data.zip.namelist() else key
                _check_mask_shape(path, npz_member_shape(data.zip, member), limits)
                arr = np.asarray(data[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"{path}: unreadable mask array ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DecodeError(f"{path}: mask array must be [T,H,W] or [H,W], got {arr.shape}")
    return binarize(arr, mask_value)


def _check_mask_shape(path: Path, shape: tuple[int, ...], limits: DecodeLimits) -> None:
    if len(shape) not in (2, 3):
        raise DecodeError(f"{path}: mask array must be [T,H,W] or [H,W], got {shape}")
    try:
        limits.check_clip(*((1, *shape) if len(shape) == 2 else shape))
    except DecodeError as exc:
        raise DecodeError(f"{path}: mask array of shape {shape}: {exc}") from exc


def find_mask(masks_dir: Path, stem: str, suffix: str) -> Path | None:
    """The mask source for the clip ``stem``: ``<stem><suffix>/`` folder or ``<stem><suffix>.<ext>`` file."""
    base = f"{stem}{suffix}"
    folder = masks_dir / base
    if folder.is_dir():
        return folder
    exts = (".npy", ".npz", *VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS)
    candidates = [masks_dir / f"{base}{ext}" for ext in exts] + [masks_dir / f"{base}{ext.upper()}" for ext in exts]
    return next((c for c in candidates if c.is_file()), None)


def check_pair(frames: U8Array, masks: U8Array, what: str) -> None:
    """Frames and masks must have equal ``[T,H,W]``; raises :class:`DecodeError` naming ``what``."""
    if masks.shape[0] != frames.shape[0]:
        raise DecodeError(f"{what}: {frames.shape[0]} frames but {masks.shape[0]} mask frames")
    if masks.shape[1:] != frames.shape[1:]:
        raise DecodeError(f"{what}: frames are {frames.shape[2]}x{frames.shape[1]} but masks {masks.shape[2]}x{masks.shape[1]}")


def clip_with_masks(
    decoded: DecodedClip,
    mask_path: Path,
    options: ImportOptions,
    what: str,
    *,
    clip_id: str,
    participant_id: str,
    side: str = "",
    origin: str = "",
) -> ImportedClip:
    """A decoded clip with the mask stack at ``mask_path``, checked against its ``[T,H,W]``.

    Keeps the file's frame rate, pixel spacing and decoder warnings (none about the file's
    spacing when ``--pixel-spacing`` gives it); ``what`` names the input in errors.
    """
    masks = load_mask_stack(mask_path, options.mask_value, options.limits)
    check_pair(decoded.frames, masks, what)
    return ImportedClip(
        clip_id=clip_id,
        participant_id=participant_id,
        frames=decoded.frames,
        masks=masks,
        fps=decoded.fps,
        pixel_spacing_mm=decoded.pixel_spacing_mm,
        pixel_spacing_xy_mm=decoded.pixel_spacing_xy_mm,
        warnings=decoded.warnings_given_spacing(options.pixel_spacing_mm is not None),
        side=side,
        origin=origin,
    )


# ---------------------------------------------------------------------------------------
# running an import


def guarded(
    items: Iterable[T], work: Callable[[T], ImportedClip | None], describe: Callable[[T], str], report: ImportReport, skip_bad: bool
) -> Iterator[ImportedClip]:
    """Apply ``work`` to each item; a :class:`DecodeError` stops the import (exit 2) or, with
    ``skip_bad``, is reported and the item skipped."""
    for item in items:
        try:
            clip = work(item)
        except (DecodeError, UserInputError) as exc:
            if not skip_bad:
                raise UserInputError(f"{exc} (use --skip-bad to skip bad inputs)") from exc
            report.skipped.append(f"{describe(item)}: {exc}")
            continue
        if clip is not None:
            yield clip


def progress(items: list[T], desc: str) -> Iterator[T]:
    """``items`` with a tqdm progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit="clip", file=sys.stderr, disable=None, leave=False)


#: File (in the dataset folder) that imports lock while they merge their rows into the manifest.
LOCK_NAME = ".import.lock"


@contextlib.contextmanager
def dataset_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.import.lock`` exclusively (waiting for another import's commit to end).

    An OS lock (``flock``): the system drops it when its process dies, so a killed import
    leaves no stale lock. Without ``fcntl`` (Windows) imports are not serialised.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with (out / LOCK_NAME).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _existing_records(out: Path) -> list[ClipRecord]:
    if not (out / MANIFEST_NAME).is_file():
        return []
    try:
        return read_manifest(out)
    except ManifestError as exc:
        raise UserInputError(f"--out: existing manifest is invalid: {exc}") from exc


def write_import(
    clips: Iterable[ImportedClip],
    options: ImportOptions,
    source: str,
    report: ImportReport | None = None,
    before_commit: Callable[[], None] | None = None,
) -> ImportReport:
    """Write ``clips`` into ``options.out`` and update its manifest and splits (see the module doc).

    ``report`` (filled with skipped inputs while ``clips`` is consumed) is completed and returned.

    All or nothing: clip files are written to a staging folder (``OUT/clips/.importing-*``)
    and moved into place only once every input was read, just before the manifest is
    replaced, so an import that fails or is interrupted half-way leaves the dataset as it
    was (a re-imported clip's old file is not overwritten under its old manifest row).
    ``before_commit`` runs after the last input was read, before anything is moved. The
    commit (re-reading the manifest, merging, moving the files, writing the manifest) holds
    :func:`dataset_lock`, so imports into one dataset running at once keep each other's rows.
    """
    out = options.out
    _existing_records(out)  # an invalid manifest stops the import before any input is read
    report = report if report is not None else ImportReport()
    made = [d for d in (out, out / CLIPS_DIR) if not d.exists()]  # removed again if the import fails
    (out / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out / CLIPS_DIR))
    try:
        seen: dict[str, str] = {}
        for clip in clips:
            clip_id = safe_id(clip.clip_id)
            if clip_id in seen:
                inputs = f"{seen[clip_id]} and {clip.origin}" if seen[clip_id] and clip.origin else "two inputs"
                raise UserInputError(
                    f"{inputs} give the same clip id {clip_id!r} (ids keep only letters, digits, '.', '_' and '-'): rename one of them"
                )
            seen[clip_id] = clip.origin
            rel = f"{CLIPS_DIR}/{clip_id}.npz"
            try:
                arrays = ClipArrays(frames=clip.frames, masks=clip.masks)
            except ValueError as exc:
                raise UserInputError(f"clip {clip_id}: {exc}") from exc
            write_clip(staging / f"{clip_id}.npz", arrays)
            if not clip.masks.any():
                report.empty_masks.append(clip_id)
            spacing = options.pixel_spacing_mm if options.pixel_spacing_mm is not None else clip.pixel_spacing_mm
            report.warnings.extend(f"{clip_id}: {note}" for note in clip.warnings)
            if options.pixel_spacing_mm is None and clip.pixel_spacing_xy_mm and is_anisotropic(*clip.pixel_spacing_xy_mm):
                report.warnings.append(f"{clip_id}: the manifest keeps one spacing per clip, their mean {spacing:.4g} mm")
            report.written.append(
                ClipRecord(
                    clip_id=clip_id,
                    participant_id=safe_id(clip.participant_id),
                    side=options.side or clip.side,
                    plane=options.plane or clip.plane,
                    quality="",
                    pixel_spacing_mm=spacing,
                    fps=(options.fps or clip.fps) if clip.frames.shape[0] > 1 else None,  # a still has no frame rate (docs/dataset.md)
                    n_frames=int(clip.frames.shape[0]),
                    height=int(clip.frames.shape[1]),
                    width=int(clip.frames.shape[2]),
                    split="",
                    source=source,
                    file=rel,
                )
            )
        if not report.written:
            raise UserInputError("nothing was imported" + (f"; skipped: {'; '.join(report.skipped)}" if report.skipped else ""))
        with dataset_lock(out):  # imports into one dataset may run at once: each merges the manifest as it is now
            merged = merge_records(_existing_records(out), report.written)
            try:
                merged = assign_splits(merged, options.ratios, options.split_seed)
            except SplitError as exc:
                raise UserInputError(str(exc)) from exc
            if before_commit is not None:
                before_commit()
            for rec in report.written:
                (staging / Path(rec.file).name).replace(out / rec.file)
            by_id = {r.clip_id: r for r in merged}
            report.written = [by_id[r.clip_id] for r in report.written]
            report.all_records = merged
            report.manifest = write_manifest(out, merged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if report.manifest is None:
            for folder in reversed(made):
                with contextlib.suppress(OSError):  # not empty: someone else's files
                    folder.rmdir()
    return report
