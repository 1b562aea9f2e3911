"""Reading and writing one clip file of the dataset layout.

A clip file is an ``.npz`` (deflate level 1: as small as level 6 on speckle, 2.6x faster)
holding ``frames`` (``uint8 [T,H,W]``, grey levels) and
``masks`` (``uint8 [T,H,W]``, 1 = nerve, 0 = background). Files are written with fixed
zip timestamps so that the same arrays always give the same bytes (the generator's
determinism depends on it).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ultramn.errors import UserInputError

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)

U8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ClipArrays:
    """Frames and masks of one clip: both ``uint8 [T,H,W]``."""

    frames: U8Array
    masks: U8Array

    def __post_init__(self) -> None:
        if self.frames.ndim != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T,H,W], got {self.frames.dtype} {self.frames.shape}")
        if self.masks.shape != self.frames.shape or self.masks.dtype != np.uint8:
            raise ValueError(f"masks must be uint8 with the frames' shape {self.frames.shape}, got {self.masks.dtype} {self.masks.shape}")


def write_clip(path: Path, clip: ClipArrays) -> None:
    """Write ``clip`` to ``path`` (deflate-compressed, byte-deterministic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in (("frames", clip.frames), ("masks", clip.masks)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=1)
    tmp.replace(path)


class ClipFileError(UserInputError):
    """A clip file of a dataset is missing or unreadable; the message names the file."""


def check_clip_files(paths: Iterable[Path], show: int = 5) -> None:
    """Raise :class:`ClipFileError` naming up to ``show`` of ``paths`` that are missing or not clip NPZs.

    Reads only each ZIP's directory (milliseconds a file), so a dataset can be checked before
    training starts, in the main process, instead of failing later inside a loader worker.
    """
    bad: list[str] = []
    for path in paths:
        if not path.is_file():
            bad.append(f"{path} (missing)")
            continue
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            bad.append(f"{path} (not a clip NPZ: {exc})")
            continue
        if not {"frames.npy", "masks.npy"} <= names:
            bad.append(f"{path} (no 'frames' and 'masks' arrays)")
    if bad:
        more = f" and {len(bad) - show} more" if len(bad) > show else ""
        raise ClipFileError(f"{len(bad)} clip file(s) listed in the manifest are unusable: {'; '.join(bad[:show])}{more}")


def read_clip(path: Path) -> ClipArrays:
    """Read a clip file written by :func:`write_clip` (or ``np.savez`` with the same keys).

    Raises :class:`ClipFileError` (a :class:`~ultramn.errors.UserInputError`: the CLI prints
    it and exits 2) when the file is missing, not an NPZ of ``frames`` and ``masks``, or
    its arrays break the :class:`ClipArrays` contract.
    """
    if not path.is_file():
        raise ClipFileError(f"{path}: clip file listed in the manifest is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return ClipArrays(frames=np.asarray(data["frames"]), masks=np.asarray(data["masks"]))
    except KeyError as exc:
        raise ClipFileError(f"{path}: not a clip file (it needs the arrays 'frames' and 'masks')") from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ClipFileError(f"{path}: unreadable clip file ({exc})") from exc
