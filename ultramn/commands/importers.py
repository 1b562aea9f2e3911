"""`ultramn importers` sub-command (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the sub-command(s) of this module to ``app``."""
