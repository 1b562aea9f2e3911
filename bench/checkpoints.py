"""``--model NAME=CHECKPOINT`` of the benchmarks that compare trained models, checked when parsed."""

from __future__ import annotations

import argparse
from pathlib import Path


def named_checkpoint(text: str) -> tuple[str, Path]:
    """An argparse ``type``: ``NAME=CHECKPOINT`` -> ``(name, path)``, the file existing (else exit 2)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"checkpoint not found: {path}")
    return name, Path(path)
