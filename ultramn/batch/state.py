"""Resumable batch state: an append-only journal ``<out>/state.jsonl``, one line per finished clip.

A line is the clip's full record (see :func:`ultramn.batch.outputs.record`); the last
line of a clip wins. A re-run skips clips whose last record succeeded on the same file
content (SHA-256), and analyses failed, changed and new clips again. Appending one line per
clip keeps writes small and a crash loses at most the line being written (a torn last
line is ignored when read back).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.jsonl"


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


class BatchState:
    """The journal of one output folder."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line from a crash
                if isinstance(rec, dict) and isinstance(rec.get("clip"), str):
                    self.records[rec["clip"]] = rec

    def is_done(self, clip: str, sha256: str) -> bool:
        """Whether ``clip`` succeeded before with this content."""
        rec = self.records.get(clip)
        return rec is not None and rec.get("status") == "succeeded" and rec.get("sha256") == sha256

    def append(self, record: dict[str, Any]) -> None:
        """Journal ``record`` (flushed and synced: it survives a crash right after)."""
        self.records[record["clip"]] = record
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
