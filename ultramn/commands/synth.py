"""`ultramn synth`: generate a synthetic dataset, or a preview contact sheet."""

from __future__ import annotations

from pathlib import Path

import typer

from ultramn.errors import UserInputError, out_path_problem


def register(app: typer.Typer) -> None:
    """Add the sub-command(s) of this module to ``app``."""

    @app.command("synth")
    def synth(
        participants: int = typer.Option(0, "--participants", "-n", help="Participants to simulate (8 clips each: 4 planes x L/R)."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Dataset folder to write (manifest.csv + clips/)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical output."),
        frames: int | None = typer.Option(None, "--frames", help="Frames per clip (default: sampled per clip in 24-48)."),
        size: tuple[int, int] = typer.Option((256, 256), "--size", help="Frame height and width in pixels (H W)."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per CPU); fewer if memory is short."),
        sweep_off: float = typer.Option(
            0.0, "--sweep-off", help="Share (0-1) of transverse clips that slide off (or onto) the nerve: frames without it."
        ),
        preview: Path | None = typer.Option(None, "--preview", help="Write a PNG contact sheet (planes x quality grades) instead."),
    ) -> None:
        """Generate realistic synthetic median-nerve ultrasound clips with nerve masks."""
        from ultramn.data.synth.config import MAX_WORKERS, SynthConfig

        height, width = size
        if preview is not None:
            from ultramn.data.synth.preview import PREVIEW_FRAMES, write_preview

            if out is not None:
                raise UserInputError("--preview and --out are exclusive: give one of them")
            unused = [
                name
                for name, given in (
                    ("--participants", participants != 0),
                    ("--frames", frames is not None),
                    ("--workers", workers is not None),
                    ("--sweep-off", sweep_off != 0.0),
                )
                if given
            ]
            if unused:
                raise UserInputError(
                    f"--preview takes --seed and --size only (its clips have {PREVIEW_FRAMES} frames); {', '.join(unused)} apply to --out"
                )
            if preview.suffix.lower() != ".png":
                raise UserInputError(f"--preview must name a .png file, got {preview}")
            if (problem := out_path_problem(preview, folder=False, example="preview.png")) is not None:
                raise UserInputError(f"--preview {preview}: {problem}")

            cfg = SynthConfig(participants=1, seed=seed, height=height, width=width, frames=frames)
            path = write_preview(cfg, preview)
            typer.echo(f"wrote {path}")
            return
        if out is None:
            raise UserInputError("give --out DIR (with --participants N), or --preview PNG")
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise UserInputError(f"--workers must be in [1, {MAX_WORKERS}], got {workers}")
        if (problem := out_path_problem(out, folder=True)) is not None:  # before any clip is made
            raise UserInputError(f"--out {out}: {problem}")
        cfg = SynthConfig(participants=participants, seed=seed, height=height, width=width, frames=frames, sweep_off=sweep_off)
        from tqdm import tqdm

        from ultramn.data.synth.generator import generate_dataset, plan_dataset_workers

        plan = plan_dataset_workers(cfg, workers)  # one clip that does not fit memory stops here
        if plan.note:
            typer.echo(f"note: {plan.note}", err=True)
        total = 8 * cfg.participants
        with tqdm(total=total, unit="clip", desc="synth", disable=total < 2) as bar:
            records = generate_dataset(cfg, out, workers=plan.workers, progress=bar.update)
        n_frames = sum(r.n_frames for r in records)
        typer.echo(f"wrote {len(records)} clips ({n_frames} frames) of {cfg.participants} participants to {out}")
