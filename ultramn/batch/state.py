"""Resumable batch state: an append-only journal ``<out>/state.jsonl``, one line per finished clip.

A line is the clip's full record (see :func:`ultramn.batch.outputs.record`); the last
line of a clip wins. A re-run skips clips whose last record succeeded on the same file
content (SHA-256) with the same analysis options (``--pixel-spacing``, ``--stride``) under
the model the back end serves now (its name and version, :class:`~ultramn.batch.types.ModelId`),
and analyses failed, changed and new clips, and every clip whose options or model changed,
again. A record without a model of its own (from before the model was journalled) counts
with the model of its result; one without either, or a back end that does not say which
model it serves, counts as the same model. Appending one line per clip keeps writes small
and a crash loses at most the line being written (a torn last line is ignored when read back).

The folder also keeps a random token (``.batch-token``) from which each clip's upload key
is made (:meth:`BatchState.upload_key`): a re-run after an interruption sends the same key
for a clip whose upload the gateway had accepted, and gets that job back instead of
analysing the clip twice.

``--redo`` (:meth:`BatchState.begin_redo`) analyses every clip again: its records carry the
run's redo id, kept in ``.batch-redo`` until the run has done every clip, so the same
command after an interruption resumes the redo instead of starting it over; a run without
``--redo`` drops an unfinished redo (its clips analysed again so far stay done).

One run at a time writes to a folder: :func:`output_lock` holds ``.batch-lock`` (an advisory
``flock``, released when the process ends, however it ends) for the whole run, and a second
run on the same folder is refused with :class:`OutputBusyError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ultramn.batch.types import ModelId

STATE_FILE = "state.jsonl"
TOKEN_FILE = ".batch-token"
LOCK_FILE = ".batch-lock"
REDO_FILE = ".batch-redo"


class OutputBusyError(RuntimeError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Create ``out`` and hold its lock while the block runs; :class:`OutputBusyError` when another
    process holds it (the message names that process). A file system without locks (some network
    mounts) runs unlocked."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+", encoding="ascii") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise OutputBusyError(
                f"another `ultramn batch` ({who}) is writing to {out}: wait for it to finish or use another --out"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            yield
            return
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's content ("" when it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _saved_hex_id(path: Path, n_bytes: int) -> str:
    """The random hex id (``2 * n_bytes`` characters) saved in ``path``; a new one, saved there
    atomically, when the file is missing or does not hold one."""
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        value = ""
    if len(value) != 2 * n_bytes or any(c not in "0123456789abcdef" for c in value):
        value = secrets.token_hex(n_bytes)
        tmp = path.with_name(f"{path.name}.tmp")
        tmp.write_text(value + "\n", encoding="ascii")
        os.replace(tmp, path)
    return value


#: Record fields a :class:`BatchState` keeps in memory per clip (with the byte ``offset`` of its
#: journal line); the rest, the result above all (~0.5 kB a frame), is read back from the file.
INDEX_FIELDS: tuple[str, ...] = ("clip", "status", "sha256", "options", "model", "redo")


class BatchState:
    """The journal of one output folder.

    ``records`` holds each clip's last record in brief (:data:`INDEX_FIELDS` and its line's
    ``offset``), so memory does not grow with the results of a large archive; :meth:`full`
    and :attr:`full_records` read whole records back from the journal.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            last = b""
            with open(self.path, "rb") as fh:
                offset = 0
                for raw in fh:
                    self._index(raw, offset)
                    offset += len(raw)
                    last = raw
            if last and not last.endswith(b"\n"):
                # a line torn by a crash: end it, or the next record would be glued to it and lost too
                with open(self.path, "ab") as fh:
                    fh.write(b"\n")

    def _index(self, raw: bytes, offset: int) -> None:
        try:
            rec = json.loads(raw)
        except ValueError:
            return  # a torn line from a crash (or bytes that are not UTF-8)
        if isinstance(rec, dict) and isinstance(rec.get("clip"), str):
            entry = {k: rec.get(k) for k in INDEX_FIELDS}
            if entry["model"] is None and isinstance(rec.get("result"), dict):
                entry["model"] = rec["result"].get("model")  # a record from before the model was journalled
            self.records[rec["clip"]] = {**entry, "offset": offset}

    def full(self, clip: str) -> dict[str, Any] | None:
        """The whole last record of ``clip`` (``None`` when it has none)."""
        entry = self.records.get(clip)
        if entry is None:
            return None
        with open(self.path, "rb") as fh:
            fh.seek(entry["offset"])
            rec = json.loads(fh.readline())
        return rec if isinstance(rec, dict) else None

    @property
    def full_records(self) -> Mapping[str, dict[str, Any]]:
        """Clip -> whole last record, read from the journal when asked for (one at a time)."""
        return _FullRecords(self)

    @property
    def token(self) -> str:
        """The folder's random token, made and saved on first use (hex, 32 characters)."""
        return _saved_hex_id(self.path.with_name(TOKEN_FILE), 16)

    def upload_key(self, clip: str, sha256: str, salt: str = "") -> str:
        """The key the uploads of ``clip`` with this content carry in this folder (hex, 64 characters);
        ``salt`` (the model served, a redo's id) gives another key, so the gateway does not give back
        a job made under another model or before a redo."""
        extra = f"\n{salt}" if salt else ""
        return hashlib.sha256(f"{self.token}\n{clip}\n{sha256}{extra}".encode()).hexdigest()

    def is_done(
        self, clip: str, sha256: str, options: dict[str, Any] | None = None, model: ModelId | None = None, redo: str | None = None
    ) -> bool:
        """Whether ``clip`` succeeded before with this content and these analysis ``options``
        (a record without options was made with the defaults: ``{}``), under ``model`` (see
        :meth:`other_model`) and, with ``redo``, in that redo."""
        rec = self.records.get(clip)
        return (
            rec is not None
            and rec.get("status") == "succeeded"
            and rec.get("sha256") == sha256
            and (rec.get("options") or {}) == (options or {})
            and not self.other_model(clip, model)
            and (redo is None or rec.get("redo") == redo)
        )

    def other_model(self, clip: str, model: ModelId | None) -> bool:
        """Whether the last record of ``clip`` was made under a model other than ``model``
        (:meth:`ModelId.same_as`: another name or version, or other weights where both know them);
        ``False`` when either is unknown (``model`` is ``None``, the record names no model)."""
        rec = self.records.get(clip)
        made = ModelId.of(rec.get("model")) if rec is not None else None
        return model is not None and made is not None and not made.same_as(model)

    def begin_redo(self) -> str:
        """The id of the redo this run does (hex, 16 characters): the unfinished one's in ``.batch-redo``,
        else a new one, saved there until :meth:`end_redo`."""
        return _saved_hex_id(self.path.with_name(REDO_FILE), 8)

    def end_redo(self) -> None:
        """Forget the redo (it has done every clip, or a run without ``--redo`` drops it)."""
        self.path.with_name(REDO_FILE).unlink(missing_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        """Journal ``record`` (flushed and synced: it survives a crash right after)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with open(self.path, "ab") as fh:
            offset = fh.tell()
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._index(line, offset)


class _FullRecords(Mapping[str, dict[str, Any]]):
    """:attr:`BatchState.full_records`."""

    def __init__(self, state: BatchState) -> None:
        self.state = state

    def __getitem__(self, clip: str) -> dict[str, Any]:
        rec = self.state.full(clip)
        if rec is None:
            raise KeyError(clip)
        return rec

    def __iter__(self) -> Iterator[str]:
        return iter(self.state.records)

    def __len__(self) -> int:
        return len(self.state.records)
