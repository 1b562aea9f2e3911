"""Find the clips of a batch input: a folder, a ZIP/TAR archive, or a DICOMDIR.

A file is a clip when its extension is one the decoders know (``.mp4``, ``.dcm``, ``.npy``,
...) or when its content sniffs as a known format (DICOM files of an exam export often have
no extension). A file with a known extension but broken content is still a clip: it fails
at analysis and is reported, it is not silently dropped. Everything else (notes, hidden
files, ``__MACOSX``, links) is listed in :attr:`Discovery.skipped`.

An archive is extracted safely (:func:`ultramn.data.archives.safe_extract`) under the
work folder; a ZIP given as the input is always an archive of clips (to analyse a ZIP of
frame images as one clip, put it in a folder). A DICOMDIR (the file, or one inside a
folder or archive) contributes the image files it references; they are not listed twice.
Clip names are POSIX paths relative to the input, naturally sorted; they key the results.
A file name that is not valid UTF-8 (a Latin-1 name from an old system) keeps its file but
is named with its undecodable bytes escaped (``caf\\xe9.mp4``), so the name can be written
to the journal, the CSV and the masks' path. The batch's own output folder, when it lies in
the input folder (or is it), is not searched: its masks are no clips; nor is any other
output folder of ``ultramn batch`` in the input (a sub-folder holding a ``.batch-token``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ultramn.batch.outputs import FRAMES_FILE, MASKS_DIR, RESULTS_FILE, SUMMARY_FILE
from ultramn.batch.patients import FOLLOWUP_FILE
from ultramn.batch.state import LOCK_FILE, STATE_FILE, TOKEN_FILE
from ultramn.data.archives import (
    DEFAULT_ARCHIVE_LIMITS,
    ArchiveError,
    ArchiveLimits,
    CheckProgress,
    ExtractProgress,
    archive_kind,
    dicomdir_files,
    is_npz,
    remove_tree,
    safe_extract,
)
from ultramn.data.decoders import EXTENSION_FORMATS, SNIFF_BYTES, DecodeError, natural_key, sniff_format


@dataclass(frozen=True)
class Clip:
    """One clip of a batch: ``name`` (relative POSIX path, the batch's key) and its file."""

    name: str
    path: Path


@dataclass
class Discovery:
    """The clips found, and the names of files that are not clips."""

    clips: list[Clip] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: the names in ``skipped`` that are symbolic links (never followed, to files or folders)
    links: list[str] = field(default_factory=list)

    def skipped_text(self) -> str:
        """``"3 other files, 2 of them links (links are not followed)"``, for messages."""
        text = f"{len(self.skipped)} other file{'s' if len(self.skipped) != 1 else ''}"
        if self.links:
            text += f", {len(self.links)} of them link{'s' if len(self.links) != 1 else ''} (links are not followed)"
        return text


def is_clip_file(path: Path) -> bool:
    """Known clip extension, or content one of the decoders recognises."""
    if path.suffix.lower() in EXTENSION_FORMATS:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
        sniff_format(head, path.name)
    except (OSError, DecodeError):
        return False
    return True


def clip_name(rel: str) -> str:
    """``rel`` (a relative POSIX path from the file system) as text: the bytes of a name that is
    not UTF-8 (which Python keeps as lone surrogates, unwritable as UTF-8) as ``\\xNN`` escapes."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _outputs(out: Path | None, root: Path) -> set[Path]:
    """What :func:`_walk` leaves out of ``root``: the output folder ``out``, or its outputs when it is ``root``."""
    if out is None:
        return set()
    out = out.resolve()
    if out != root.resolve():
        return {out}
    return {out / name for name in (MASKS_DIR, RESULTS_FILE, SUMMARY_FILE, FRAMES_FILE, FOLLOWUP_FILE, STATE_FILE, TOKEN_FILE, LOCK_FILE)}


def _skipped_folder(path: Path, excluded: set[Path]) -> bool:
    """A link, the output folder, or another batch's output folder (it has a ``.batch-token``)."""
    return path.is_symlink() or (path / TOKEN_FILE).is_file() or (bool(excluded) and path.resolve() in excluded)


def _walk(root: Path, out: Path | None = None) -> Discovery:
    """Clips under the folder ``root`` (links are never followed; the batch's outputs in ``out`` are left out)."""
    found = Discovery()
    excluded = _outputs(out, root)
    files: list[Path] = []
    referenced: set[Path] = set()
    for folder, dirs, names in os.walk(root, followlinks=False):
        for d in dirs:
            if not _hidden(d) and (Path(folder) / d).is_symlink():  # os.walk lists a link to a folder here, and never enters it
                name = clip_name((Path(folder) / d).relative_to(root).as_posix())
                found.skipped.append(name)
                found.links.append(name)
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and not _skipped_folder(Path(folder) / d, excluded))
        for name in sorted(names):
            path = Path(folder) / name
            if excluded and path.resolve() in excluded:
                continue
            rel = clip_name(path.relative_to(root).as_posix())
            if _hidden(name) or path.is_symlink() or not path.is_file():
                found.skipped.append(rel)
                if path.is_symlink() and not _hidden(name):
                    found.links.append(rel)
            elif name.upper() == "DICOMDIR":
                for ref in dicomdir_files(path):
                    if not ref.is_relative_to(root.resolve()):
                        raise ArchiveError(f"{rel}: references a file outside the input")
                    referenced.add(ref)
            else:
                files.append(path)
    root_resolved = root.resolve()
    for ref in sorted(referenced):
        found.clips.append(Clip(clip_name(ref.relative_to(root_resolved).as_posix()), ref))
    for path in files:
        if path.resolve() in referenced:
            continue
        rel = clip_name(path.relative_to(root).as_posix())
        if is_clip_file(path):
            found.clips.append(Clip(rel, path))
        else:
            found.skipped.append(rel)
    found.clips.sort(key=lambda c: natural_key(c.name))
    return found


#: Names of archives of clips (a file named so that is no archive is a damaged one, not a clip).
ARCHIVE_SUFFIXES: tuple[str, ...] = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")


def _posing_as_archive(source: Path) -> bool:
    """Named like an archive, or a ZIP's first bytes but not an ``.npz``: given as INPUT, a damaged archive."""
    name = source.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        with open(source, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK") and not name.endswith(".npz")


def discover(
    source: Path,
    workdir: Path,
    limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
    *,
    out: Path | None = None,
    progress: ExtractProgress | None = None,
    checking: CheckProgress | None = None,
) -> Discovery:
    """The clips of ``source`` (folder, archive, DICOMDIR or one clip file).

    ``out``: the batch's output folder; when it lies in the folder ``source`` its outputs are
    not taken for clips (the masks of a first run would be analysed by the next).
    Archives are extracted into ``workdir / "extracted"`` (replaced on each call), telling
    ``progress`` the bytes written and ``checking`` how far a TAR's check has read
    (:func:`~ultramn.data.archives.safe_extract`).
    Raises :class:`FileNotFoundError` for a missing input and :class:`ArchiveError` for an
    unsafe or unreadable archive, and for a file that is neither a clip nor an archive (a
    damaged archive, a note): given alone, such a file is a mistake, not a batch of one.
    """
    if source.is_dir():
        return _walk(source, out)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist")
    kind = None if is_npz(source) else archive_kind(source)  # an NPZ is one clip
    if kind == "dicomdir":
        root = source.parent.resolve()
        clips = [Clip(clip_name(p.relative_to(root).as_posix()), p) for p in dicomdir_files(source)]
        return Discovery(sorted(clips, key=lambda c: natural_key(c.name)))
    if kind in ("zip", "tar"):
        dest = workdir / "extracted"
        remove_tree(dest)
        safe_extract(source, dest, limits, progress, checking)
        return _walk(dest)
    if _posing_as_archive(source):
        raise ArchiveError("not a readable ZIP or TAR archive (damaged or truncated?)")
    if not is_clip_file(source):
        raise ArchiveError("not a clip, a ZIP/TAR archive or a DICOMDIR")
    return Discovery([Clip(clip_name(source.name), source)])
