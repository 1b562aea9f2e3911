"""``ultramn train``: train a model from a TOML config on any dataset in the project's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ultramn.errors import UserInputError, checkpoint_path_problem, folder_problem


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""

    @app.command("train")
    def train_command(
        config: Path = typer.Option(..., "--config", help="Training config (TOML), e.g. configs/ultramn.toml."),
        data: Path | None = typer.Option(None, "--data", help="Dataset root (overrides the config's data.root)."),
        init: Path | None = typer.Option(
            None,
            "--init",
            help="Checkpoint to fine-tune from (same arch), or a unet2d_multitask checkpoint to start a unet3d model (inflation).",
        ),
        out: Path = typer.Option(
            Path("runs/train"),
            "--out",
            help="Output folder (best.pt, last_state.pt, metrics.csv, tb/, summary.json). Without --resume, a run "
            "already there is replaced (its files are deleted once the checks pass).",
        ),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Continue the run in --out from its last saved epoch (exactly: weights, optimiser and random state); "
            "metrics.csv and tb/ are cut back to that epoch.",
        ),
        epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the config's epoch count."),
        seed: int | None = typer.Option(
            None, "--seed", min=0, help="Override the config's seed (weights init, sampling, augmentation): seed replicates."
        ),
        patience: int | None = typer.Option(
            None, "--patience", min=1, help="Override the config's early-stopping patience (epochs without improvement)."
        ),
        max_minutes: float | None = typer.Option(
            None,
            "--max-minutes",
            min=0.01,
            help="Wall-clock budget of this session: no new epoch starts if the last epoch's duration would overrun it "
            "(a --resume session gets the whole budget again).",
        ),
        assignments: list[str] = typer.Option(
            [], "--set", help="Override any config field, repeatable: --set data.num_workers=0 --set optim.lr=0.002 (TOML values)."
        ),
        device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (overrides the config)."),
        threads: int | None = typer.Option(
            None, "--threads", min=1, help="torch CPU threads (overrides the config; the speed, not the result)."
        ),
    ) -> None:
        """Train the multitask model (or a 2D reference model) and keep the best validation checkpoint."""
        import logging

        from pydantic import ValidationError

        from ultramn.data.manifest import ManifestError
        from ultramn.model.checkpoint import CheckpointError
        from ultramn.train.config import describe_validation_error, load_config, parse_assignments
        from ultramn.train.loop import train

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = load_config(config)
        overrides: dict[str, Any] = parse_assignments(assignments)
        if data is not None:
            if (problem := folder_problem(data)) is not None:
                raise UserInputError(f"--data: {problem}")
            overrides["data"] = {**overrides.get("data", {}), "root": str(data)}
        if epochs is not None:
            overrides["epochs"] = epochs
        if seed is not None:
            overrides["seed"] = seed
        if device is not None:
            if device not in ("auto", "cpu", "cuda"):
                raise UserInputError(f"--device must be auto, cpu or cuda, not {device!r}")
            overrides["device"] = device
        if threads is not None:
            overrides["threads"] = threads
        if patience is not None:
            overrides["early_stopping_patience"] = patience
        if max_minutes is not None:
            overrides["max_minutes"] = max_minutes
        if overrides:
            try:
                cfg = cfg.with_overrides(**overrides)
            except ValidationError as exc:
                raise UserInputError(f"invalid override:\n{describe_validation_error(exc)}") from exc
        if init is not None and (problem := checkpoint_path_problem(init)) is not None:
            raise UserInputError(f"--init: checkpoint {problem}")
        try:
            result = train(cfg, out, init=init, resume=resume)
        except (ManifestError, CheckpointError) as exc:  # the dataset or --init checkpoint, not the code
            raise UserInputError(str(exc)) from exc
        typer.echo(
            f"best epoch {result.best_epoch}: {result.best_metrics} -> {result.best_checkpoint} "
            f"({result.epochs_run} epochs in {result.seconds / 60:.1f} min; stopped: {result.stop_reason})"
        )
