"""The training loop: epochs of augmented windows, validation, best-checkpoint selection.

Writes into ``out_dir``: ``best.pt`` (the shippable checkpoint, see
:mod:`ultramn.model.checkpoint`), ``last_state.pt`` (everything needed to ``--resume``),
``metrics.csv`` (one row per epoch), ``tb/`` (TensorBoard), ``config.json`` and, when the run
ends, ``summary.json`` (best epoch, epochs run, time, why it stopped, device).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ultramn.data.augment import AugmentConfig
from ultramn.data.windows import WindowDataset, worker_init_fn
from ultramn.errors import UserInputError
from ultramn.jsonio import write_json
from ultramn.model import build_model
from ultramn.model.checkpoint import load_checkpoint, save_checkpoint
from ultramn.train.config import TrainConfig
from ultramn.train.losses import multitask_loss
from ultramn.train.schedule import warmup_cosine

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
STATE_NAME = "last_state.pt"
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"  # the finished run: TrainResult, device, epochs planned


@dataclass
class TrainResult:
    """Where the run's outputs are and how the best epoch scored."""

    best_checkpoint: Path
    best_epoch: int
    best_metrics: dict[str, float]
    #: epochs the run has finished, all sessions together (a ``--resume`` continues the count)
    epochs_run: int
    #: training wall time of all sessions together
    seconds: float
    #: why the run ended: ``"epochs"`` (all epochs ran), ``"early stopping"`` or ``"time budget"``
    stop_reason: str = "epochs"
    #: the first epoch (1-based) of this session when it resumed a run, else ``None``
    resumed_at_epoch: int | None = None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def out_of_time(max_minutes: float | None, elapsed_s: float, last_epoch_s: float) -> bool:
    """True when another epoch (as long as the last, ``last_epoch_s`` seconds) would end after ``max_minutes``."""
    return max_minutes is not None and last_epoch_s > 0 and elapsed_s + last_epoch_s > max_minutes * 60


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("device 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def _loader(ds: WindowDataset, cfg: TrainConfig, shuffle: bool, seed: int) -> DataLoader[dict[str, Any]]:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.data.batch_size,
        shuffle=shuffle,
        num_workers=cfg.data.num_workers,
        worker_init_fn=worker_init_fn if cfg.data.num_workers else None,
        generator=gen,
        persistent_workers=False,
        drop_last=False,
    )


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader[dict[str, Any]], device: torch.device) -> dict[str, float]:
    """Per-frame Dice at model resolution (real frames only) and window plane accuracy."""
    model.eval()
    dices: list[float] = []
    correct = labelled = 0
    for batch in loader:
        frames = batch["frames"].to(device)
        plane_logits, mask_logits = model(frames)
        pred = (mask_logits.float() > 0).cpu()
        target = batch["masks"] > 0.5
        valid = batch["valid"].bool()
        inter = (pred & target).sum(dim=(-2, -1)).squeeze(1).double()
        denom = (pred.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))).squeeze(1).double()
        dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))
        dices.extend(dice[valid].tolist())
        planes = batch["plane"]
        has = planes >= 0
        labelled += int(has.sum())
        correct += int((plane_logits.argmax(1).cpu()[has] == planes[has]).sum())
    dice_mean = float(np.mean(dices)) if dices else 0.0
    plane_acc = correct / labelled if labelled else float("nan")
    score = dice_mean if not labelled else 0.5 * (dice_mean + plane_acc)
    return {"dice": dice_mean, "plane_accuracy": plane_acc, "score": score}


class _CsvLog:
    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        self.append = append and path.exists()

    def write(self, row: dict[str, float | int]) -> None:
        new = not self.append
        with self.path.open("a" if self.append else "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.append = True


def train(cfg: TrainConfig, out_dir: Path, init: Path | None = None, resume: bool = False, show_progress: bool = True) -> TrainResult:
    """Train ``cfg`` into ``out_dir``; ``init`` fine-tunes from a checkpoint; ``resume`` continues."""
    from torch.utils.tensorboard import SummaryWriter

    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.model_dump(), indent=2))
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    root = Path(cfg.data.root)
    augment = AugmentConfig(**cfg.data.augment)
    train_ds = WindowDataset(
        root,
        split="train",
        mode="train",
        windows_per_clip=cfg.data.windows_per_clip,
        augment=augment,
        seed=cfg.seed,
        max_clips=cfg.data.max_train_clips,
        cache_mb=cfg.data.cache_mb,
    )
    val_ds = WindowDataset(
        root, split="val", mode="eval", stride=cfg.data.eval_stride, max_clips=cfg.data.max_val_clips, cache_mb=cfg.data.cache_mb
    )
    if len(train_ds) == 0:
        raise UserInputError(f"{root}: no training clips (split 'train' is empty)")
    if len(val_ds) == 0:
        raise UserInputError(f"{root}: no validation clips (split 'val' is empty); run `ultramn split {root}`")

    model = build_model(cfg.model.arch, **cfg.model.hparams)
    if init is not None:
        init_model, init_meta = load_checkpoint(init)
        if init_meta.arch != cfg.model.arch:
            raise UserInputError(f"--init checkpoint is a {init_meta.arch!r} model, the config asks for {cfg.model.arch!r}")
        model.load_state_dict(init_model.state_dict())
        log.info("fine-tuning from %s", init)
    model.to(device)

    steps_per_epoch = -(-len(train_ds) // cfg.data.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = warmup_cosine(
        optimizer, int(cfg.optim.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch, cfg.optim.min_lr_ratio
    )
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_score, best_epoch, stale = 0, -float("inf"), -1, 0
    seconds_before = 0.0  # training time of earlier sessions of a resumed run
    best_metrics: dict[str, float] = {}
    state_path = out_dir / STATE_NAME
    if resume:
        if not state_path.is_file():
            raise UserInputError(f"--resume: no {STATE_NAME} in {out_dir}")
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_score, best_epoch, stale = state["epoch"] + 1, state["best_score"], state["best_epoch"], state["stale"]
        best_metrics = dict(state["best_metrics"])
        seconds_before = float(state.get("seconds", 0.0))
        log.info("resuming at epoch %d", start_epoch)

    csv_log = _CsvLog(out_dir / METRICS_NAME, append=resume)
    writer = SummaryWriter(str(out_dir / "tb"))
    val_loader = _loader(val_ds, cfg, shuffle=False, seed=cfg.seed)
    epochs_run = 0
    stop_reason = "epochs"
    last_epoch_seconds = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        if stale >= cfg.early_stopping_patience:
            log.info("early stopping: no improvement for %d epochs", stale)
            stop_reason = "early stopping"
            break
        if out_of_time(cfg.max_minutes, time.perf_counter() - t_start, last_epoch_seconds):
            log.info(
                "time budget: %.1f min used, the next epoch would overrun %.1f min", (time.perf_counter() - t_start) / 60, cfg.max_minutes
            )
            stop_reason = "time budget"
            break
        train_ds.set_epoch(epoch)
        model.train()
        sums = {"loss": 0.0, "plane": 0.0, "dice": 0.0, "pixel": 0.0, "temporal": 0.0}
        n_batches = 0
        t_epoch = time.perf_counter()
        bar = tqdm(
            _loader(train_ds, cfg, shuffle=True, seed=cfg.seed + epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not show_progress,
            leave=False,
            unit="batch",
        )
        for batch in bar:
            frames = batch["frames"].to(device, non_blocking=True)
            masks = batch["masks"].to(device, non_blocking=True)
            planes = batch["plane"].to(device)
            valid = batch["valid"].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                plane_logits, mask_logits = model(frames)
            parts = multitask_loss(plane_logits, mask_logits, planes, masks, valid, cfg.loss)
            scaler.scale(parts.total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n_batches += 1
            sums["loss"] += float(parts.total.detach())
            sums["plane"] += parts.plane
            sums["dice"] += parts.dice
            sums["pixel"] += parts.pixel
            sums["temporal"] += parts.temporal
            bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4f}")
        train_seconds = time.perf_counter() - t_epoch
        val = validate(model, val_loader, device)
        row: dict[str, float | int] = {
            "epoch": epoch + 1,
            **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": train_seconds,
        }
        csv_log.write(row)
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(key, value, epoch + 1)
        score = val[cfg.monitor]
        improved = score > best_score
        if improved:
            best_score, best_epoch, stale, best_metrics = score, epoch, 0, val
            save_checkpoint(
                out_dir / BEST_NAME,
                model,
                cfg.model.arch,
                cfg.model.hparams,
                extra={"epoch": epoch + 1, "val": val, "config": cfg.model_dump(), "init": str(init) if init else None},
            )
        else:
            stale += 1
        msg = (
            f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} val dice {val['dice']:.4f} "
            f"plane acc {val['plane_accuracy']:.4f} ({train_seconds:.0f}s){' *' if improved else ''}"
        )
        if show_progress:
            tqdm.write(msg)
        log.info(msg)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "stale": stale,
                "best_metrics": best_metrics,
                "seconds": seconds_before + time.perf_counter() - t_start,
            },
            state_path,
        )
        last_epoch_seconds = time.perf_counter() - t_epoch
        epochs_run += 1
    writer.close()
    result = TrainResult(
        best_checkpoint=out_dir / BEST_NAME,
        best_epoch=best_epoch + 1,
        best_metrics=best_metrics,
        epochs_run=start_epoch + epochs_run,
        seconds=seconds_before + time.perf_counter() - t_start,
        stop_reason=stop_reason,
        resumed_at_epoch=start_epoch + 1 if resume else None,
    )
    summary = {**asdict(result), "best_checkpoint": str(result.best_checkpoint), "device": str(device), "epochs_planned": cfg.epochs}
    write_json(out_dir / SUMMARY_NAME, summary)
    return result
