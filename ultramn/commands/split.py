"""``ultramn split``: redraw the participant-level train/val/test split of a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ultramn.data.splits import DEFAULT_RATIOS
from ultramn.errors import UserInputError


def register(app: typer.Typer) -> None:
    """Add ``split`` to ``app``."""

    @app.command("split")
    def split_command(
        root: Path = typer.Argument(..., help="Dataset folder holding manifest.csv."),
        ratios: tuple[float, float, float] = typer.Option(
            DEFAULT_RATIOS, "--ratios", help="Train, val and test fractions of participants (non-negative, sum 1)."
        ),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the deterministic shuffle (0 or more)."),
    ) -> None:
        """Assign splits by participant (stratified by plane) and rewrite the manifest's split column."""
        from ultramn.data.manifest import MANIFEST_NAME, ManifestError, read_manifest, write_manifest
        from ultramn.data.splits import SplitError, assign_splits, format_split_table, validate_ratios

        try:
            checked = validate_ratios(ratios)
        except SplitError as exc:
            raise UserInputError(f"--ratios: {exc}") from exc
        if root.is_file():
            hint = f"give its folder, {root.parent}" if root.name == MANIFEST_NAME else f"give the folder holding {MANIFEST_NAME}"
            raise UserInputError(f"{root} is a file, not a dataset folder; {hint}")
        if not root.is_dir():
            raise UserInputError(f"no such dataset folder: {root}")
        try:
            records = read_manifest(root)
        except ManifestError as exc:
            raise UserInputError(str(exc)) from exc
        if not records:
            raise UserInputError(f"{root}: the manifest has no clips")
        records = assign_splits(records, checked, seed)
        write_manifest(root, records)
        typer.echo(f"{len(records)} clips of {len({r.participant_id for r in records})} participants; clips per split:")
        typer.echo(format_split_table(records))
