"""Safe listing and extraction of archives of clips: ZIP, TAR (plain, .gz, .bz2, .xz), DICOMDIR.

Archives come from outside (uploads, exam exports), so every member is checked *before*
anything is written:

- names: no absolute paths (``/x``, ``C:\\x``), no ``..`` components, no NUL bytes;
- links: a symlink or hardlink whose target leaves the archive is refused; links that stay
  inside are not extracted (never followed); device files and FIFOs are refused;
- limits (:class:`ArchiveLimits`): member count, total uncompressed size, size of one
  member, and compression ratio (a zip bomb declares a tiny compressed size for a huge
  file); the sizes are enforced again while extracting, on the bytes actually written.

Every refusal is an :class:`ArchiveError` (a ``ValueError``) whose message names the
member and the rule: :class:`UnsafeArchiveError` for hostile names/links,
:class:`ArchiveLimitError` for limits, plain :class:`ArchiveError` for unreadable files.
"""

from __future__ import annotations

import lzma
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Final, Literal

ArchiveKind = Literal["zip", "tar", "dicomdir"]

#: Members whose uncompressed size is below this are not ratio-checked (tiny files compress well).
RATIO_MIN_BYTES: Final[int] = 1 << 20
_COPY_CHUNK: Final[int] = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(ValueError):
    """An archive that cannot (or must not) be read or extracted."""


class UnsafeArchiveError(ArchiveError):
    """A member that would escape the destination: absolute path, ``..``, a link out, a device."""


class ArchiveLimitError(ArchiveError):
    """Too many members, too many bytes, or a suspicious compression ratio (zip bomb)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds an archive must respect (sizes are uncompressed bytes)."""

    max_members: int = 10_000
    max_total_bytes: int = 16 * 1024**3
    max_member_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0


DEFAULT_ARCHIVE_LIMITS: Final[ArchiveLimits] = ArchiveLimits()


@dataclass(frozen=True)
class ArchiveMember:
    """One regular file of an archive: its safe relative POSIX ``name`` and uncompressed ``size``."""

    name: str
    size: int


# --------------------------------------------------------------------------- detection


#: How a ZIP file starts: a local file header, or the end record of an empty ZIP.
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")


def archive_kind(path: Path) -> ArchiveKind | None:
    """``"zip"``, ``"tar"``, ``"dicomdir"`` (a file named DICOMDIR) or ``None`` for anything else.

    A ZIP is recognised by its first bytes, not by :func:`zipfile.is_zipfile`, which finds
    the end record of any ZIP stored last in a plain TAR. (An NPZ is a ZIP too; whether a ZIP
    is one clip or an archive of clips is :func:`is_npz`'s question.)
    """
    if path.name.upper() == "DICOMDIR":
        return "dicomdir"
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
        if head in _ZIP_STARTS and zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError as exc:
        raise ArchiveError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    except (EOFError, zlib.error, lzma.LZMAError, tarfile.TarError) as exc:  # a compressed stream cut off or damaged
        raise ArchiveError(f"{path.name} is a damaged or cut-off archive ({exc})") from exc
    return None


def is_npz(path: Path) -> bool:
    """Whether ``path`` is NumPy's ``.npz`` (one clip), not an archive of clips.

    An NPZ is a ZIP of top-level ``.npy`` arrays that the clip decoder reads as one clip: it
    has a ``frames`` array, or holds a single array. A ZIP with folders (``exam/clip.npy``)
    or of several arrays none called ``frames`` is an archive of ``.npy`` clips.
    """
    try:
        with path.open("rb") as fh:
            if fh.read(4) not in _ZIP_STARTS:
                return False
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError):
        return False
    if not names or not all(n.lower().endswith(".npy") and "/" not in n for n in names):
        return False
    return len(names) == 1 or "frames.npy" in names


# --------------------------------------------------------------------------- name checks


def safe_name(raw: str, archive: str = "archive") -> str:
    """``raw`` as a normalised relative POSIX path; :class:`UnsafeArchiveError` when it is not one."""
    if "\x00" in raw:
        raise UnsafeArchiveError(f"{archive}: member name with a NUL byte")
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(f"{archive}: member {raw!r} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} escapes the archive (path traversal)")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: member with an empty name")
    return "/".join(parts)


def _link_stays_inside(member: str, target: str, *, relative_to_member: bool) -> bool:
    """Whether a link at ``member`` pointing to ``target`` resolves inside the archive root."""
    target = target.replace("\\", "/")
    if not target or target.startswith("/") or _DRIVE.match(target):
        return False
    base = list(PurePosixPath(member).parts[:-1]) if relative_to_member else []
    for part in PurePosixPath(target).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not base:
                return False
            base.pop()
        else:
            base.append(part)
    return True


# --------------------------------------------------------------------------- limits


class _Budget:
    """Counts members and bytes against :class:`ArchiveLimits`."""

    def __init__(self, limits: ArchiveLimits, archive: str) -> None:
        self.limits = limits
        self.archive = archive
        self.members = 0
        self.total = 0

    def add_member(self, name: str, size: int, compressed: int | None) -> None:
        lim = self.limits
        self.members += 1
        if self.members > lim.max_members:
            raise ArchiveLimitError(f"{self.archive}: more than {lim.max_members} members")
        if size > lim.max_member_bytes:
            raise ArchiveLimitError(f"{self.archive}: member {name!r} is {size} bytes uncompressed (limit {lim.max_member_bytes})")
        self.total += size
        if self.total > lim.max_total_bytes:
            raise ArchiveLimitError(f"{self.archive}: more than {lim.max_total_bytes} bytes uncompressed in all")
        if compressed is not None and size >= RATIO_MIN_BYTES and size > lim.max_ratio * max(compressed, 1):
            raise ArchiveLimitError(
                f"{self.archive}: member {name!r} expands {size / max(compressed, 1):.0f}x (limit {lim.max_ratio:.0f}x): a zip bomb?"
            )

    def check_whole(self, archive_bytes: int) -> None:
        """The compressed stream as a whole (TAR.GZ etc. have no per-member compressed size)."""
        if self.total >= RATIO_MIN_BYTES and self.total > self.limits.max_ratio * max(archive_bytes, 1):
            ratio = self.total / max(archive_bytes, 1)
            raise ArchiveLimitError(f"{self.archive}: expands {ratio:.0f}x (limit {self.limits.max_ratio:.0f}x): a compression bomb?")


# --------------------------------------------------------------------------- ZIP


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _zip_plan(zf: zipfile.ZipFile, archive: str, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, ArchiveMember]]:
    budget = _Budget(limits, archive)
    plan: list[tuple[zipfile.ZipInfo, ArchiveMember]] = []
    for info in zf.infolist():
        if info.is_dir():  # folders are never created from entries: files' names are checked
            continue
        name = safe_name(info.filename, archive)
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        if _zip_is_symlink(info):
            if info.file_size > 4096:
                raise UnsafeArchiveError(f"{archive}: symlink {name!r} with an oversized target")
            target = zf.read(info).decode("utf-8", "replace")
            if not _link_stays_inside(name, target, relative_to_member=True):
                raise UnsafeArchiveError(f"{archive}: symlink {name!r} points outside the archive ({target!r})")
            continue  # links inside are never extracted nor followed
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise UnsafeArchiveError(f"{archive}: member {name!r} is not a regular file")
        budget.add_member(name, info.file_size, info.compress_size)
        plan.append((info, ArchiveMember(name, info.file_size)))
    return plan


# --------------------------------------------------------------------------- TAR


def _tar_plan(
    tf: tarfile.TarFile, archive: str, limits: ArchiveLimits, archive_bytes: int, read: Callable[[], None] | None = None
) -> list[tuple[tarfile.TarInfo, ArchiveMember]]:
    """``read`` is called after each member header (a compressed TAR is read to its end here)."""
    budget = _Budget(limits, archive)
    plan: list[tuple[tarfile.TarInfo, ArchiveMember]] = []
    for info in tf:  # streamed: stops at the member limit without reading the whole index
        if read is not None:
            read()
        if info.isdir():
            continue
        name = safe_name(info.name, archive)
        if info.issym() or info.islnk():
            inside = _link_stays_inside(name, info.linkname, relative_to_member=info.issym())
            kind = "symlink" if info.issym() else "hardlink"
            if not inside:
                raise UnsafeArchiveError(f"{archive}: {kind} {name!r} points outside the archive ({info.linkname!r})")
            continue
        if not info.isreg():
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a device, FIFO or other special file")
        budget.add_member(name, info.size, None)
        plan.append((info, ArchiveMember(name, info.size)))
    budget.check_whole(archive_bytes)
    return plan


# --------------------------------------------------------------------------- public API


def list_members(path: Path, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS) -> list[ArchiveMember]:
    """The regular files of the ZIP/TAR at ``path``, after every safety check (nothing written)."""
    kind = archive_kind(path)
    archive = path.name
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                return [m for _, m in _zip_plan(zf, archive, limits)]
        if kind == "tar":
            with tarfile.open(path) as tf:
                return [m for _, m in _tar_plan(tf, archive, limits, path.stat().st_size)]
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f"{archive}: unreadable archive ({exc})") from exc
    raise ArchiveError(f"{archive}: not a ZIP or TAR archive")


class ExtractionWriteError(OSError):
    """Writing an extracted member failed (full disk, file size limit, permissions): a storage
    problem of the destination, not a bad archive (``errno`` is the write's)."""


def _write_error(exc: OSError, dest: Path) -> ExtractionWriteError:
    return ExtractionWriteError(exc.errno, exc.strerror or str(exc), str(dest))


def _copy_limited(src: IO[bytes], dest: Path, expected: int, name: str, archive: str, budget_left: int) -> int:
    """Copy at most ``expected`` bytes (the declared size); more means a lying header.

    A failing write raises :class:`ExtractionWriteError`; a failing read is the archive's fault.
    """
    written = 0
    try:
        out = open(dest, "xb")  # noqa: SIM115 - closed below; opening is a write that may fail
    except FileExistsError:
        raise
    except OSError as exc:
        raise _write_error(exc, dest) from exc
    with out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > expected or written > budget_left:
                raise ArchiveLimitError(f"{archive}: member {name!r} holds more bytes than it declares")
            try:
                out.write(chunk)
            except OSError as exc:
                raise _write_error(exc, dest) from exc
    return written


def _target(dest_root: Path, name: str, archive: str) -> Path:
    path = (dest_root / name).resolve()
    if not path.is_relative_to(dest_root):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the destination")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a member's folder is a file: the archive's doing
        raise
    except OSError as exc:
        raise _write_error(exc, path.parent) from exc
    if not path.parent.resolve().is_relative_to(dest_root):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written through a link")
    return path


#: ``progress(bytes_written, bytes_declared)`` after each member :func:`safe_extract` writes
ExtractProgress = Callable[[int, int], None]
#: ``checking(archive_bytes_read, archive_bytes)`` while :func:`safe_extract` checks a TAR's members
CheckProgress = Callable[[int, int], None]


def safe_extract(
    path: Path,
    dest: Path,
    limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
    progress: ExtractProgress | None = None,
    checking: CheckProgress | None = None,
) -> list[Path]:
    """Extract the regular files of the ZIP/TAR at ``path`` under ``dest``; their paths.

    Everything is checked first (:func:`list_members`' rules), then written with byte
    counting. ``dest`` is created; on any error the files written so far are removed.
    ``progress`` is told the bytes written so far and the members' declared total.
    ``checking`` is told how far the check has read into a TAR file (bytes of the file as
    it lies on disk, compressed or not): a ``.tar.gz`` is decompressed to its end before
    its first member is written. A ZIP's members are listed in its directory, at once.
    """
    archive = path.name
    kind = archive_kind(path)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written: list[Path] = []
    left = limits.max_total_bytes
    done = 0
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                zplan = _zip_plan(zf, archive, limits)
                total = sum(m.size for _, m in zplan)
                for info, member in zplan:
                    target = _target(root, member.name, archive)
                    with zf.open(info) as src:
                        written.append(target)
                        n = _copy_limited(src, target, member.size, member.name, archive, left)
                    left, done = left - n, done + n
                    if progress is not None:
                        progress(done, total)
        elif kind == "tar":
            size = path.stat().st_size
            with path.open("rb") as raw, tarfile.open(fileobj=raw) as tf:
                read = (lambda: checking(raw.tell(), size)) if checking is not None else None
                tplan = _tar_plan(tf, archive, limits, size, read)
                if checking is not None:
                    checking(size, size)
                total = sum(m.size for _, m in tplan)
                for tinfo, member in tplan:
                    target = _target(root, member.name, archive)
                    data = tf.extractfile(tinfo)
                    if data is None:
                        raise ArchiveError(f"{archive}: member {member.name!r} has no data")
                    with data:
                        written.append(target)
                        n = _copy_limited(data, target, member.size, member.name, archive, left)
                    left, done = left - n, done + n
                    if progress is not None:
                        progress(done, total)
        else:
            raise ArchiveError(f"{archive}: not a ZIP or TAR archive")
    except BaseException as exc:
        for file in written:
            file.unlink(missing_ok=True)
        if isinstance(exc, ArchiveError | ExtractionWriteError):
            raise
        if isinstance(exc, zipfile.BadZipFile | tarfile.TarError | OSError | EOFError | ValueError):
            raise ArchiveError(f"{archive}: unreadable archive ({exc})") from exc
        raise
    return written


# --------------------------------------------------------------------------- DICOMDIR


def dicomdir_files(path: Path) -> list[Path]:
    """The image files a DICOMDIR references (``ReferencedFileID``), each checked to lie beside it.

    Records without a file reference (patients, studies, series) are skipped; a reference
    that escapes the DICOMDIR's folder raises :class:`UnsafeArchiveError`. Missing files are
    returned too (decoding them reports the error per clip).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = path.parent.resolve()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:  # pydicom's own words advise force=True, which is no user's option
        raise ArchiveError(f"{path.name}: not a DICOMDIR (not a DICOM file: no 'DICM' header)") from exc
    except (OSError, EOFError, ValueError, AttributeError) as exc:
        raise ArchiveError(f"{path.name}: unreadable DICOMDIR ({exc})") from exc
    records = getattr(ds, "DirectoryRecordSequence", None)
    if records is None:
        raise ArchiveError(f"{path.name}: not a DICOMDIR (no DirectoryRecordSequence)")
    files: list[Path] = []
    seen: set[Path] = set()
    for record in records:
        ref = getattr(record, "ReferencedFileID", None)
        if ref is None:
            continue
        parts = [str(p) for p in ref] if isinstance(ref, list | tuple) or type(ref).__name__ == "MultiValue" else [str(ref)]
        name = safe_name("/".join(parts), path.name)
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise UnsafeArchiveError(f"{path.name}: reference {name!r} points outside its folder")
        if target not in seen:
            seen.add(target)
            files.append(target)
    return files


def remove_tree(path: Path) -> None:
    """Remove an extraction folder (missing is fine)."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "DEFAULT_ARCHIVE_LIMITS",
    "ArchiveError",
    "ArchiveKind",
    "ArchiveLimitError",
    "ArchiveLimits",
    "ArchiveMember",
    "UnsafeArchiveError",
    "archive_kind",
    "dicomdir_files",
    "is_npz",
    "list_members",
    "remove_tree",
    "safe_extract",
    "safe_name",
]
