"""Import DICOM cine loops (and single frames) with masks beside them, without identifiers.

- Files: every ``*.dcm`` / ``*.dicom`` file, and every extension-less file with the
  ``DICM`` marker, anywhere under the DICOM folder (``DICOMDIR`` itself is ignored).
- Masks for ``DIR/sub/x.dcm``: in ``MASKS/sub/`` (default: beside the file), named
  ``x_mask/`` (folder of PNG frames), ``x_mask.npy``/``.npz`` (labels ``[T,H,W]``) or
  ``x_mask.tif`` (multi-page) — the same rules as the video importer.
- Pseudonyms: ``participant_id`` = first 12 hex digits of ``sha256(salt | PatientID)``
  (of the file's bytes when PatientID is empty); ``clip_id`` = ``dicom-`` + 12 hex digits of
  ``sha256(salt | file bytes)``. One salt per dataset (:func:`dataset_salt`): random and kept
  in ``OUT/.participant_salt`` (by the first import that succeeds) so re-imports give the
  same ids, or a given ``salt`` (to pool datasets) of which only a fingerprint is kept.
  No name, ID, date or file name is written to the manifest.
- A file with the bytes of an earlier one (one export copied twice), or one that is no
  DICOM (empty, another format), is a bad input (skipped with ``--skip-bad``).
- Side: ``ImageLaterality`` / ``Laterality`` (``L``/``R``) unless ``--side`` is given.
- Pixel spacing and fps come from the header (see :func:`ultramn.data.decoders.decode_dicom`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from ultramn.data.decoders import (
    SNIFF_BYTES,
    CorruptFileError,
    DecodeError,
    FormatMismatchError,
    UnsupportedFormatError,
    decode_dicom,
    natural_key,
    sniff_format,
)
from ultramn.data.importers.common import (
    ImportedClip,
    ImportOptions,
    ImportReport,
    clip_with_masks,
    find_mask,
    guarded,
    progress,
    require_dir,
    write_import,
)
from ultramn.errors import UserInputError

SALT_FILE = ".participant_salt"
HASH_HEX_DIGITS = 12
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")


@dataclass(frozen=True)
class DicomHeader:
    """The few header facts the importer needs (the patient id only ever leaves here hashed)."""

    patient_id: str
    laterality: str


#: Prefix of a stored salt fingerprint: the dataset's salt came from ``--salt`` and is not kept.
_GIVEN_SALT_PREFIX = "sha256:"


def _fingerprint(salt: str) -> str:
    return _GIVEN_SALT_PREFIX + hashlib.sha256(salt.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DatasetSalt:
    """The salt of a dataset (:func:`dataset_salt`) and whether ``OUT/.participant_salt`` is still to be written."""

    value: str
    given: bool
    new: bool

    def store(self, out: Path) -> None:
        """Write ``OUT/.participant_salt`` when this salt is new (the random salt, or a given salt's fingerprint).

        Runs while the import holds the dataset's lock: when another import stored a different
        salt since this one began (two first imports at once), this one stops instead of
        replacing it, since the ids already in the manifest were made with that salt.
        """
        if not self.new:
            return
        out.mkdir(parents=True, exist_ok=True)
        path = out / SALT_FILE
        text = _fingerprint(self.value) if self.given else self.value
        if path.is_file():
            if path.read_text(encoding="utf-8").strip() == text:
                return
            raise UserInputError(f"another DICOM import into {out} stored its salt while this one ran; run this import again")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)


def dataset_salt(out: Path, salt: str | None) -> DatasetSalt:
    """The salt of the dataset in ``out``; one dataset, one salt, so its pseudonyms stay stable.

    ``OUT/.participant_salt`` holds the random salt made on the first import without
    ``salt``, or the SHA-256 fingerprint of a ``salt`` given on the first import (the secret
    itself is not written). A later import must agree with it: a different ``salt``, or none
    where the first import had one, is a :class:`UserInputError`, since mixed salts give one
    patient two ids and can put them in two splits.

    Nothing is written here: a new salt is stored (:meth:`DatasetSalt.store`) only by an
    import that succeeds, so a failed first import does not tie the dataset to a salt.
    """
    path = out / SALT_FILE
    stored = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    if stored.startswith(_GIVEN_SALT_PREFIX):
        if not salt:
            raise UserInputError(f"{out} was imported with --salt; give the same --salt again (it is not stored)")
        if _fingerprint(salt) != stored:
            raise UserInputError(f"--salt differs from the salt of the earlier DICOM imports into {out}; use that salt or a new --out")
        return DatasetSalt(salt, given=True, new=False)
    if stored:
        if salt and salt != stored:
            raise UserInputError(
                f"{out} already holds DICOM imports made with the salt in {path}; drop --salt to reuse it, or import into a new --out"
            )
        return DatasetSalt(stored, given=False, new=False)
    if salt:
        return DatasetSalt(salt, given=True, new=True)
    return DatasetSalt(secrets.token_hex(16), given=False, new=True)


def pseudonym(salt: str, data: bytes) -> str:
    """First :data:`HASH_HEX_DIGITS` hex digits of ``sha256(salt | data)``."""
    return hashlib.sha256(salt.encode("utf-8") + b"|" + data).hexdigest()[:HASH_HEX_DIGITS]


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` file, or any other file with the ``DICM`` marker.

    Scanners and PACS exports often name files by UID (``1.2.840.113619.2.55.3.4.1``, whose
    "extension" is ``.1``), ``IM0001`` or ``IMG0002.IMA``: the marker decides for them.
    """
    if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    with path.open("rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def dicom_stem(path: Path) -> str:
    """The name a DICOM file's masks start with: without a DICOM extension, else the whole name
    (``x.dcm`` -> ``x``; ``1.2.840.1`` -> ``1.2.840.1``)."""
    return path.stem if path.suffix.lower() in DICOM_EXTENSIONS else path.name


def find_dicoms(root: Path) -> list[Path]:
    """DICOM files under ``root`` (recursive), naturally sorted by relative path."""
    return sorted((p for p in root.rglob("*") if is_dicom_file(p)), key=lambda p: natural_key(str(p.relative_to(root))))


def read_header(path: Path) -> DicomHeader:
    """PatientID and laterality, without reading the pixel data."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["PatientID", "ImageLaterality", "Laterality"])
    except Exception as exc:  # pydicom raises many types for broken files
        raise DecodeError(f"{path.name}: unreadable DICOM header ({exc})") from exc
    laterality = str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "") or "").strip().upper()
    return DicomHeader(
        patient_id=str(getattr(ds, "PatientID", "") or "").strip(),
        laterality=laterality if laterality in ("L", "R") else "",
    )


def _refuse_other_formats(path: Path, content: bytes) -> None:
    """A :class:`DecodeError` for a file that is no DICOM by the decoder's rule (the ``DICM``
    marker, or a raw dataset's first tag), as an upload to the gateway would be refused:
    empty, another format (a PNG saved as ``.dcm``) or unrecognised bytes. Without it the
    DICOM reader, which reads anything by force, called them DICOM without pixel data."""
    if not content:
        raise CorruptFileError(f"{path.name}: empty file")
    try:
        fmt = sniff_format(content[:SNIFF_BYTES])
    except DecodeError as exc:
        raise UnsupportedFormatError(f"{path.name}: not a DICOM file (unrecognised content)") from exc
    if fmt != "dicom":
        raise FormatMismatchError(f"{path.name}: not a DICOM file, the content is {fmt.upper()}")


def load_dicom_clip(path: Path, root: Path, masks_root: Path, options: ImportOptions, salt: str, mask_suffix: str) -> ImportedClip:
    """Decode one DICOM and its mask into an :class:`ImportedClip` with pseudonymous ids."""
    rel_dir = path.parent.relative_to(root)
    stem = dicom_stem(path)
    mask_path = find_mask(masks_root / rel_dir, stem, mask_suffix)
    if mask_path is None:
        raise DecodeError(
            f"{path.relative_to(root)}: no mask found (expected {stem}{mask_suffix}/ folder, "
            f"{stem}{mask_suffix}.npy/.npz or .tif in {masks_root / rel_dir})"
        )
    content = path.read_bytes()
    _refuse_other_formats(path, content)
    header = read_header(path)
    decoded = decode_dicom(content, limits=options.limits, filename=path.name)
    return clip_with_masks(
        decoded,
        mask_path,
        options,
        path.name,
        clip_id=f"dicom-{pseudonym(salt, content)}",
        participant_id=pseudonym(salt, header.patient_id.encode("utf-8") if header.patient_id else content),
        side=header.laterality,
    )


def import_dicoms(
    dicoms_dir: Path,
    options: ImportOptions,
    *,
    masks_dir: Path | None = None,
    mask_suffix: str = "_mask",
    salt: str | None = None,
) -> ImportReport:
    """Import every DICOM under ``dicoms_dir`` with its mask into ``options.out``; see the module doc."""
    require_dir(dicoms_dir, "--dicoms")
    masks_root = require_dir(masks_dir, "--masks") if masks_dir is not None else dicoms_dir
    if not mask_suffix:
        raise UserInputError("--masks-suffix must not be empty")
    files = find_dicoms(dicoms_dir)
    if not files:
        raise UserInputError(f"--dicoms: no DICOM files (.dcm, .dicom or with a DICM marker) under {dicoms_dir}")
    key = dataset_salt(options.out, salt)
    report = ImportReport()
    first_of: dict[str, Path] = {}

    def load(path: Path) -> ImportedClip:
        clip = load_dicom_clip(path, dicoms_dir, masks_root, options, key.value, mask_suffix)
        first = first_of.setdefault(clip.clip_id, path)
        if first != path:  # the clip id hashes the bytes: a second export of one file
            raise DecodeError(f"{path.relative_to(dicoms_dir)}: the same file as {first.relative_to(dicoms_dir)} (identical bytes)")
        return clip

    clips = guarded(
        progress(files, "import dicom"),
        load,
        lambda p: str(p.relative_to(dicoms_dir)),
        report,
        options.skip_bad,
    )
    return write_import(clips, options, source="dicom", report=report, before_commit=lambda: key.store(options.out))
