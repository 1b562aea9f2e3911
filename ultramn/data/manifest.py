"""The dataset manifest: ``manifest.csv`` at a dataset's root, one row per clip.

Columns (in this order): ``clip_id, participant_id, side, plane, quality,
pixel_spacing_mm, fps, n_frames, height, width, split, source, file``.

- ``side`` is ``L``/``R`` and ``plane`` one of ``TW TF LW LF``; either may be empty for
  imported data that lacks it. ``quality`` is ``good``/``fair``/``poor`` or empty.
- ``pixel_spacing_mm`` is the (isotropic) pixel size in millimetres, empty when unknown.
- ``file`` is the clip file's path relative to the dataset root (see
  :mod:`ultramn.data.clipio`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ultramn.contract import PLANES, QUALITY_GRADES, SIDES, SPLITS

MANIFEST_NAME = "manifest.csv"
#: What a clip id may hold (docs/dataset.md): ids become file names.
CLIP_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


class ManifestError(ValueError):
    """A manifest that cannot be read or that breaks the layout's rules."""


@dataclass(frozen=True)
class ClipRecord:
    """One manifest row; see the module docstring for the units."""

    clip_id: str
    participant_id: str
    side: str
    plane: str
    quality: str
    pixel_spacing_mm: float | None
    fps: float | None
    n_frames: int
    height: int
    width: int
    split: str
    source: str
    file: str

    def __post_init__(self) -> None:
        if not self.clip_id:
            raise ManifestError("clip_id must not be empty")
        if not CLIP_ID_PATTERN.fullmatch(self.clip_id):
            raise ManifestError(f"clip_id {self.clip_id!r} may only hold letters, digits, '.', '_' and '-'")
        if self.side not in ("", *SIDES):
            raise ManifestError(f"clip {self.clip_id}: side must be L, R or empty, got {self.side!r}")
        if self.plane not in ("", *PLANES):
            raise ManifestError(f"clip {self.clip_id}: plane must be one of {PLANES} or empty, got {self.plane!r}")
        if self.quality not in ("", *QUALITY_GRADES):
            raise ManifestError(f"clip {self.clip_id}: quality must be one of {QUALITY_GRADES} or empty")
        if self.split not in ("", *SPLITS):
            raise ManifestError(f"clip {self.clip_id}: split must be one of {SPLITS} or empty, got {self.split!r}")
        if self.n_frames < 1:
            raise ManifestError(f"clip {self.clip_id}: n_frames must be >= 1")

    def with_split(self, split: str) -> ClipRecord:
        """A copy of this record assigned to ``split``."""
        return replace(self, split=split)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ClipRecord))


def _opt_float(row: Mapping[str, str], column: str) -> float | None:
    """The number in ``row[column]``, ``None`` for an empty cell; ``ValueError`` naming the column."""
    text = row[column]
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None


def _int(row: Mapping[str, str], column: str) -> int:
    """The whole number in ``row[column]``; ``ValueError`` naming the column."""
    text = row[column]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a whole number") from None


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def records_to_csv(records: Iterable[ClipRecord]) -> str:
    """The manifest text for ``records`` (rows in the given order)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rec in records:
        row = asdict(rec)
        writer.writerow([_fmt(row[c]) for c in COLUMNS])
    return out.getvalue()


def write_manifest(root: Path, records: Iterable[ClipRecord]) -> Path:
    """Write ``root/manifest.csv`` atomically; returns its path."""
    recs = list(records)
    ids = [r.clip_id for r in recs]
    if len(set(ids)) != len(ids):
        raise ManifestError("clip_id values must be unique")
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(records_to_csv(recs), encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(root: Path) -> list[ClipRecord]:
    """Read ``root/manifest.csv`` (``root`` may also be the CSV itself)."""
    path = root if root.suffix == ".csv" else root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}: is this a dataset folder?")
    try:
        return _read_rows(path)
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 CSV ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from exc


def _read_rows(path: Path) -> list[ClipRecord]:
    """The records of the manifest file ``path`` (see :func:`read_manifest`)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}")
        records = []
        first_line: dict[str, int] = {}
        for line_no, row in enumerate(reader, start=2):
            short = [c for c in COLUMNS if row[c] is None]  # DictReader fills a short row's missing cells with None
            if short:
                raise ManifestError(f"{path}:{line_no}: the row has no cells for {', '.join(short)} (a row has {len(COLUMNS)})")
            try:
                records.append(
                    ClipRecord(
                        clip_id=row["clip_id"],
                        participant_id=row["participant_id"],
                        side=row["side"],
                        plane=row["plane"],
                        quality=row["quality"],
                        pixel_spacing_mm=_opt_float(row, "pixel_spacing_mm"),
                        fps=_opt_float(row, "fps"),
                        n_frames=_int(row, "n_frames"),
                        height=_int(row, "height"),
                        width=_int(row, "width"),
                        split=row["split"],
                        source=row["source"],
                        file=row["file"],
                    )
                )
            except (ValueError, KeyError) as exc:
                raise ManifestError(f"{path}:{line_no}: {exc}") from exc
            first_line.setdefault(records[-1].clip_id, line_no)
            if first_line[records[-1].clip_id] != line_no:
                raise ManifestError(f"{path}:{line_no}: clip_id {records[-1].clip_id!r} repeats line {first_line[records[-1].clip_id]}")
    return records


def merge_records(existing: list[ClipRecord], new: list[ClipRecord]) -> list[ClipRecord]:
    """``existing`` with ``new`` appended; a new record replaces an old one with its clip_id."""
    by_id = {r.clip_id: r for r in existing}
    for rec in new:
        by_id[rec.clip_id] = rec
    return list(by_id.values())
