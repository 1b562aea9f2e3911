"""``--out`` of the benchmarks: the report file, checked when the options are parsed.

A benchmark runs for minutes and writes its report at the end; a ``--out`` into a folder
that does not exist used to fail there, with the run's figures lost. :func:`report_path`
creates the parent folder up front and refuses a path it cannot write (argparse's exit 2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def report_path(text: str) -> Path:
    """An argparse ``type`` for ``--out FILE``: its parent folder exists (created now) and is writable."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder: give the report's file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {path.parent}")
    return path
