"""``ultramn compare``: one markdown table from several ``ultramn evaluate`` outputs."""

from __future__ import annotations

from pathlib import Path

import typer

from ultramn.errors import UserInputError


def register(app: typer.Typer) -> None:
    """Add ``compare`` to ``app``."""

    @app.command("compare")
    def compare_command(
        evals: list[str] = typer.Argument(..., help="NAME=EVAL_DIR pairs (folders written by ultramn evaluate)."),
        out: Path | None = typer.Option(None, "--out", help="Write the table to this markdown file too."),
    ) -> None:
        """Compare evaluations side by side (plane accuracy, Dice, HD95, CSA error, stability, with CIs).

        When the first folder has per-clip rows (clips.csv), a second table gives its paired
        differences (Dice, stability error) against each other model on the same clips.
        """
        from ultramn.evaluate.compare import comparison_table, load_clip_rows, load_metrics, paired_table

        named = []
        clip_rows = []
        for item in evals:
            name, sep, folder = item.partition("=")
            if not sep or not name or not folder:
                raise UserInputError(f"expected NAME=EVAL_DIR, got {item!r}")
            try:
                named.append((name, load_metrics(Path(folder))))
                clip_rows.append((name, load_clip_rows(Path(folder))))
            except (FileNotFoundError, ValueError) as exc:
                raise UserInputError(str(exc)) from exc
        table = comparison_table(named)
        (first_name, first_rows), others = clip_rows[0], clip_rows[1:]
        if first_rows is not None and others:
            try:
                paired = paired_table(first_name, first_rows, others)
            except ValueError as exc:
                raise UserInputError(str(exc)) from exc
            table += (
                f"\nPaired differences, {first_name} minus each model, on the same clips (95 % participant"
                " bootstrap; Dice: positive = first better; stability error: negative = first better):\n\n" + paired
            )
        typer.echo(table)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(table)
