"""``ultramn evaluate``: score a checkpoint on a split of any dataset in the project's layout."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from ultramn.contract import CONTRACT, SHIPPED_CHECKPOINT
from ultramn.errors import UserInputError, checkpoint_path_problem, folder_problem
from ultramn.windowing import (
    BLENDS,
    DEFAULT_BLEND,
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_TEMPORAL_FILTER,
    Blend,
    check_min_similarity,
    check_temporal_filter,
    default_stride,
)

#: the most bootstrap resamples ``--n-boot`` takes (the draws are held in memory: resamples x participants)
MAX_N_BOOT = 100_000

#: The shipped weights: the default of every ``--checkpoint``.
DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to ``app``."""

    @app.command("evaluate")
    def evaluate_command(
        data: Path = typer.Option(..., "--data", help="Dataset root (manifest.csv + clips)."),
        checkpoint: Path = typer.Option(DEFAULT_CHECKPOINT, "--checkpoint", help="Model checkpoint."),
        split: str = typer.Option("test", "--split", help="train, val, test or all."),
        out: Path = typer.Option(Path("runs/eval"), "--out", help="Output folder (metrics.json, report.md, figures)."),
        stride: int | None = typer.Option(
            None, "--stride", min=1, max=CONTRACT.window_frames, help="Window stride in frames, at most the window length (default T/2)."
        ),
        blend: str = typer.Option(DEFAULT_BLEND, "--blend", help=f"Stitching weights of overlapping windows: {', '.join(BLENDS)}."),
        temporal_filter: int = typer.Option(
            DEFAULT_TEMPORAL_FILTER,
            "--temporal-filter",
            help="Frames (odd) in the centred mean of the stitched mask probabilities; 1 = off.",
        ),
        temporal_min_similarity: float = typer.Option(
            DEFAULT_MIN_SIMILARITY,
            "--temporal-min-similarity",
            help="Motion gate of that mean: neighbours whose nerve map has a lower cosine similarity are left out (0-1; 0 = all).",
        ),
        n_boot: int = typer.Option(1000, "--n-boot", min=100, max=MAX_N_BOOT, help="Bootstrap resamples for the intervals."),
        max_clips: int | None = typer.Option(None, "--max-clips", min=1, help="Evaluate only the first N clips."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    ) -> None:
        """Plane accuracy, Dice/IoU/HD95/ASSD, CSA error and temporal stability, with participant bootstrap CIs."""
        import torch

        from ultramn.data.manifest import ManifestError
        from ultramn.evaluate.predict import predict_clip
        from ultramn.evaluate.runner import SPLIT_CHOICES, check_out_dir, evaluate_dataset
        from ultramn.model.checkpoint import CheckpointError, load_checkpoint
        from ultramn.train.loop import pick_device

        if blend not in BLENDS:
            raise UserInputError(f"--blend must be one of {', '.join(BLENDS)}, not {blend!r}")
        try:
            check_temporal_filter(temporal_filter)
        except ValueError as exc:
            raise UserInputError(f"--temporal-filter: {exc}") from exc
        try:
            check_min_similarity(temporal_min_similarity)
        except ValueError as exc:
            raise UserInputError(f"--temporal-min-similarity: {exc}") from exc
        if split not in SPLIT_CHOICES:
            raise UserInputError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
        if (problem := checkpoint_path_problem(checkpoint)) is not None:
            raise UserInputError(f"checkpoint {problem}")
        if (problem := folder_problem(data)) is not None:
            raise UserInputError(f"--data: {problem}")
        try:
            check_out_dir(out, data)  # before the model is loaded; evaluate_dataset checks again (its own callers)
        except ValueError as exc:
            raise UserInputError(str(exc)) from exc
        dev = pick_device(device, "--device")
        try:
            model, meta = load_checkpoint(checkpoint, map_location=dev)
        except CheckpointError as exc:
            raise UserInputError(str(exc)) from exc
        model.to(dev)

        def predictor(frames):  # type: ignore[no-untyped-def]
            return predict_clip(
                model,
                frames,
                stride=stride,
                blend=cast(Blend, blend),
                temporal_filter=temporal_filter,
                temporal_min_similarity=temporal_min_similarity,
                device=dev,
            )

        try:
            with torch.inference_mode():
                metrics = evaluate_dataset(
                    data,
                    split,
                    predictor,
                    out,
                    meta={
                        "checkpoint": str(checkpoint),
                        "arch": meta.arch,
                        "stride": stride or default_stride(CONTRACT.window_frames),
                        "blend": blend,
                        "temporal_filter": temporal_filter,
                        "temporal_min_similarity": temporal_min_similarity,
                    },
                    n_boot=n_boot,
                    max_clips=max_clips,
                )
        except (ManifestError, ValueError) as exc:
            raise UserInputError(str(exc)) from exc
        # the CSA error in mm² when any clip has a pixel spacing, else in px² (not "mm2_median=None")
        in_px = metrics.get("csa_abs_error_mm2_median") is None and metrics.get("csa_abs_error_px2_median") is not None
        csa = "csa_abs_error_px2_median" if in_px else "csa_abs_error_mm2_median"
        keys = ("n_clips", "n_frames", "plane_accuracy", "dice_mean", csa)
        typer.echo("  ".join(f"{k}={metrics.get(k)}" for k in keys))
        typer.echo(f"report: {out / 'report.md'}")
