"""``ultramn compare``: one markdown table from several ``ultramn evaluate`` outputs."""

from __future__ import annotations

from pathlib import Path

import typer

from ultramn.errors import UserInputError, out_path_problem


def register(app: typer.Typer) -> None:
    """Add ``compare`` to ``app``."""

    @app.command("compare")
    def compare_command(
        evals: list[str] = typer.Argument(
            ...,
            help="NAME=EVAL_DIR pairs (folders written by ultramn evaluate); NAME=DIR1,DIR2,... for replicate runs of one model.",
        ),
        out: Path | None = typer.Option(None, "--out", help="Write the table to this markdown file too."),
    ) -> None:
        """Compare evaluations side by side (plane accuracy, Dice, HD95, CSA error, stability, missed and false detections, with CIs).

        When the first folder has per-clip rows (clips.csv), a second table gives its paired
        differences (Dice, stability error) against each other model on the same clips. A
        model given several folders (replicate runs, e.g. ``--seed``) gets one row per run in
        the first table, its per-clip rows averaged over the runs for pairing (the interval
        then also resamples its runs), and a table of its run-to-run spread.
        """
        from ultramn.evaluate.compare import (
            ClipRows,
            comparison_table,
            load_clip_rows,
            load_metrics,
            paired_table,
            paired_tables_by_view,
            require_same_clips,
            run_spread_table,
            split_note,
            units_note,
        )

        if out is not None:
            _check_out_file(out)
        named = []
        clip_rows: list[tuple[str, list[ClipRows] | None]] = []
        replicates: list[tuple[str, list[ClipRows]]] = []
        seen: set[str] = set()
        for item in evals:
            name, sep, folders = item.partition("=")
            paths = [Path(f) for f in folders.split(",") if f]
            if not sep or not name or not paths:
                raise UserInputError(f"expected NAME=EVAL_DIR or NAME=DIR1,DIR2,..., got {item!r}")
            if name in seen:
                raise UserInputError(f"the name {name!r} is given twice; pool replicate runs as {name}=DIR1,DIR2")
            resolved = [p.resolve() for p in paths]
            twice = [p for i, p in enumerate(paths) if resolved[i] in resolved[:i]]
            if twice:  # one run counted twice: a spread of 0 and an interval as if it were two runs
                raise UserInputError(f"{name}: {twice[0]} is given twice; replicate runs are different evaluation folders")
            seen.add(name)
            try:
                runs = [load_clip_rows(p) for p in paths]
                for i, path in enumerate(paths, start=1):
                    named.append((name if len(paths) == 1 else f"{name} run {i}", load_metrics(path)))
                complete = [r for r in runs if r is not None]
                if len(complete) < len(runs):
                    clip_rows.append((name, None))
                else:
                    require_same_clips(complete)
                    clip_rows.append((name, complete))
                    if len(complete) > 1:
                        replicates.append((name, complete))
            except (OSError, ValueError) as exc:
                raise UserInputError(f"{name}: {exc}") from exc
        (first_name, first_rows), others = clip_rows[0], clip_rows[1:]
        try:
            table = comparison_table(named) + split_note(named) + units_note(named)
            if first_rows is not None and others:
                averaged = (
                    "; per-clip rows averaged over each model's runs, and the bootstrap resamples those runs too" if replicates else ""
                )
                table += (
                    f"\nPaired differences, {first_name} minus each model, on the same clips (95 % participant"
                    f" bootstrap{averaged}; Dice: positive = first better; stability error: negative = first"
                    " better):\n\n" + paired_table(first_name, first_rows, others)
                )
                table += paired_tables_by_view(first_name, first_rows, others)
            elif others:
                table += f"\nNo paired differences: {first_name} has no clips.csv (the per-clip rows ultramn evaluate writes).\n"
            for name, model_runs in replicates:
                header = f"\nRun-to-run spread of {name} (replicate runs, e.g. seeds), same clips:\n\n"
                table += header + run_spread_table(name, model_runs)
        except ValueError as exc:
            raise UserInputError(str(exc)) from exc
        if out is not None:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(table)
            except OSError as exc:
                raise UserInputError(f"--out {out}: cannot write the table ({exc.strerror or exc})") from exc
        typer.echo(table)


def _check_out_file(out: Path) -> None:
    """:class:`UserInputError` when ``--out`` cannot be the table's file: a folder, under a file, unwritable."""
    problem = out_path_problem(out, folder=False)
    if problem is not None:
        raise UserInputError(f"--out {out}: {problem}")
