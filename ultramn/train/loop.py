"""The training loop: epochs of augmented windows, validation, best-checkpoint selection.

Writes into ``out_dir``: ``best.pt`` (the shippable checkpoint, see
:mod:`ultramn.model.checkpoint`), ``last_state.pt`` (everything needed to ``--resume``,
random-number generator states included, so a resumed run repeats an uninterrupted one),
``metrics.csv`` (one row per epoch), ``tb/`` (TensorBoard), ``config.json`` and, when the run
ends, ``summary.json`` (best epoch, epochs run, time, why it stopped, device).

Everything is checked before anything is written (model hyper-parameters, dataset, ``--init``
checkpoint, ``last_state.pt``): bad input raises :class:`~ultramn.errors.UserInputError`. A fresh
run into an ``out_dir`` that holds an earlier run replaces that run's outputs; a resumed run cuts
``metrics.csv`` and TensorBoard back to the epoch its ``last_state.pt`` holds.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader
from tqdm import tqdm

from ultramn.contract import CONTRACT, PLANES
from ultramn.data.augment import AugmentConfig
from ultramn.data.windows import WindowDataset, worker_init_fn
from ultramn.errors import UserInputError, out_path_problem
from ultramn.jsonio import write_json
from ultramn.model import FramewiseMultitask, MultitaskUNet3D, build_model
from ultramn.model.base import WindowModel
from ultramn.model.checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from ultramn.model.inflate import InflationError, inflate_framewise
from ultramn.train.config import TrainConfig, describe_validation_error
from ultramn.train.losses import multitask_loss
from ultramn.train.schedule import warmup_cosine

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
STATE_NAME = "last_state.pt"
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"  # the finished run: TrainResult, device, epochs planned
TB_NAME = "tb"
#: what ``last_state.pt`` must hold (it also holds ``rng``, ``seconds``, ``arch`` and ``hparams``)
STATE_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_score", "best_epoch", "stale", "best_metrics")


class NonFiniteLossError(UserInputError):
    """The training loss became inf or nan: the run diverged (too high a learning rate, bad data)."""


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


def rng_state(device: torch.device) -> dict[str, Any]:
    """The python, numpy and torch (CPU, and CUDA when ``device`` is) generator states, as plain data and tensors."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [str(np_state[0]), torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), *(float(v) for v in np_state[2:])],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def check_model(arch: str, hparams: dict[str, Any]) -> WindowModel:
    """Build ``arch`` with ``hparams`` and run one contract window through it (eval mode, no RNG used).

    Bad hyper-parameters (unknown names, bad values, a depth the window size cannot take, a
    plane count other than the contract's) raise :class:`UserInputError` before training starts.
    """
    try:
        model = build_model(arch, **hparams)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise UserInputError(f"model.hparams {hparams}: {exc}") from exc
    window = torch.zeros(1, 1, *CONTRACT.window_shape)
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            plane_logits, mask_logits = model(window)
    except (ValueError, RuntimeError) as exc:  # InputShapeError is a ValueError
        raise UserInputError(f"model.hparams {hparams}: the {arch!r} model cannot take a {tuple(window.shape)} window: {exc}") from exc
    finally:
        model.train()
    if tuple(plane_logits.shape) != (1, len(PLANES)) or tuple(mask_logits.shape) != tuple(window.shape):
        raise UserInputError(
            f"model.hparams {hparams}: the {arch!r} model maps a {tuple(window.shape)} window to plane logits "
            f"{tuple(plane_logits.shape)} and masks {tuple(mask_logits.shape)}; the contract needs (1, {len(PLANES)}) "
            f"and {tuple(window.shape)}"
        )
    return model


def save_state(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (temporary file, then rename): never half a file."""
    atomic_torch_save(state, path)


def load_state(path: Path, model: torch.nn.Module, device: torch.device, hparams: str = "") -> dict[str, Any]:
    """Read ``last_state.pt`` and check it fits ``model``; a damaged or foreign file raises :class:`UserInputError`.

    ``hparams`` describes the configured model in the message when the weights do not fit.
    """
    from ultramn.model.checkpoint import load_failure_reason

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserInputError(f"--resume: cannot read {path}: {load_failure_reason(exc)}") from exc
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
        hint = (
            " (it is a model checkpoint such as best.pt, not a training state)" if isinstance(state, dict) and "state_dict" in state else ""
        )
        raise UserInputError(f"--resume: {path} is not a training state{hint}: missing {missing}")
    weights = state["model"]
    own = model.state_dict()
    if (
        not isinstance(weights, dict)
        or set(weights) != set(own)
        or any(not isinstance(weights[k], torch.Tensor) or weights[k].shape != v.shape for k, v in own.items())
    ):
        saved = f" (saved by a {state['arch']!r} model with hparams {state['hparams']})" if "hparams" in state else ""
        raise UserInputError(f"--resume: the weights in {path}{saved} do not fit the configured model ({hparams})")
    return state


def cut_metrics(path: Path, last_epoch: int) -> None:
    """Drop rows of ``metrics.csv`` after ``last_epoch`` (written by a session stopped before its state was saved)."""
    if not path.is_file():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")

    def keep(row: list[str]) -> bool:
        try:
            return int(float(row[col])) <= last_epoch
        except (IndexError, ValueError):
            return False

    body = [row for row in rows[1:] if keep(row)]
    if len(body) == len(rows) - 1:
        return
    log.warning("%s: dropping %d row(s) after epoch %d (the state was not saved for them)", path, len(rows) - 1 - len(body), last_epoch)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *body])
    os.replace(tmp, path)


def clear_run(out_dir: Path) -> None:
    """Remove an earlier run's outputs from ``out_dir`` (a fresh run replaces them, never mixes with them)."""
    old = [out_dir / name for name in (BEST_NAME, STATE_NAME, STATE_NAME + ".tmp", METRICS_NAME, SUMMARY_NAME)]
    found = [p for p in old if p.is_file()]
    tb = out_dir / TB_NAME
    if tb.is_dir():
        found.append(tb)
    if found:
        log.warning("%s holds an earlier run: replacing %s (use --resume to continue it)", out_dir, ", ".join(p.name for p in found))
    for p in found:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def out_of_time(max_minutes: float | None, elapsed_s: float, last_epoch_s: float) -> bool:
    """True when another epoch (as long as the last, ``last_epoch_s`` seconds) would end after ``max_minutes``."""
    return max_minutes is not None and last_epoch_s > 0 and elapsed_s + last_epoch_s > max_minutes * 60


#: the device names :func:`pick_device` takes, besides ``cuda:N`` (one GPU)
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(name: str, option: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` or ``cuda:N``.

    :class:`UserInputError` naming ``option`` for any other name, and for CUDA (or a GPU
    index) the machine does not have."""
    kind, sep, index = name.partition(":")
    if kind not in DEVICE_CHOICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise UserInputError(f"{option} must be auto, cpu, cuda or cuda:N, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"{option} {name}: no CUDA device is available (use cpu or auto)")
    if sep and int(index) >= torch.cuda.device_count():
        raise UserInputError(f"{option} {name}: there is no such GPU ({torch.cuda.device_count()} found)")
    return torch.device(name)


#: the third word of every shuffle seed's ``SeedSequence`` (``(seed, epoch, SHUFFLE_KEY)``): the
#: dataset's own item draws use ``(seed, epoch, index)``, so this keeps the two streams apart
SHUFFLE_KEY = 0x5348_5546  # "SHUF"


def shuffle_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s (0-based) shuffle order in a run seeded ``seed``.

    Mixed through ``SeedSequence``, so runs of adjacent seeds do not share orders: ``seed + epoch``
    (the rule before) gave seed 1's epoch 0 the order of seed 0's epoch 1."""
    (state,) = np.random.SeedSequence([seed, epoch, SHUFFLE_KEY]).generate_state(1, dtype=np.uint64)
    return int(state) & (2**63 - 1)


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


def worker_error(exc: UserInputError) -> UserInputError:
    """``exc`` as a data-loader worker's error, re-raised by the ``DataLoader`` with the worker's whole
    traceback as its message, turned back into the same type with the original message; other errors as they are."""
    text = str(exc)
    if not (text.startswith("Caught ") and "DataLoader worker" in text.partition("\n")[0]):
        return exc
    kind = type(exc)
    for name in (f"{kind.__module__}.{kind.__qualname__}", kind.__qualname__):
        at = text.rfind(f"\n{name}: ")
        if at >= 0:
            return kind(text[at + len(name) + 3 :].rstrip())
    return exc


def batches(loader: DataLoader[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The batches of ``loader``; a clip a worker cannot read stops the run with its own message (:func:`worker_error`)."""
    try:
        yield from loader
    except UserInputError as exc:
        raise worker_error(exc) from exc


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader[dict[str, Any]], device: torch.device) -> dict[str, float]:
    """Per-frame Dice at model resolution (real frames only) and window plane accuracy."""
    model.eval()
    dices: list[float] = []
    correct = labelled = 0
    for batch in batches(loader):
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
    # --- every check before anything is written into out_dir
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    model = check_model(cfg.model.arch, cfg.model.hparams)
    root = Path(cfg.data.root)
    if (problem := out_path_problem(out_dir, folder=True)) is not None:
        raise UserInputError(f"--out {out_dir}: {problem}")
    if out_dir.resolve() == root.resolve():  # best.pt, tb/ and metrics.csv among the clips; a new run clears them there
        raise UserInputError(f"--out {out_dir} is the dataset folder; give the run a folder of its own (e.g. runs/train)")
    try:
        augment = AugmentConfig(**cfg.data.augment)
    except ValidationError as exc:
        raise UserInputError(f"data.augment:\n{describe_validation_error(exc)}") from exc
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
    if cfg.monitor == "plane_accuracy" and not any(r.plane for r in val_ds.records):
        raise UserInputError(
            f"monitor = 'plane_accuracy', but no validation clip in {root} has a plane label; monitor 'dice' or 'score' instead"
        )

    if init is not None:
        init_model, init_meta = load_checkpoint(init)
        if isinstance(init_model, FramewiseMultitask) and isinstance(model, MultitaskUNet3D):
            try:
                untouched = inflate_framewise(init_model, model)
            except InflationError as exc:
                raise UserInputError(
                    f"--init {init}: its 2D weights (hparams {init_meta.hparams}) cannot start the configured 3D model "
                    f"(model.hparams {cfg.model.hparams}): {exc}"
                ) from exc
            log.info("inflating the 2D multitask U-Net %s into the 3D model (%d temporal tensors start at 0)", init, len(untouched))
        elif init_meta.arch != cfg.model.arch:
            raise UserInputError(
                f"--init checkpoint is a {init_meta.arch!r} model, the config asks for {cfg.model.arch!r} "
                "(the one cross-architecture start is a 'unet2d_multitask' checkpoint into a 'unet3d' model)"
            )
        else:
            try:
                model.load_state_dict(init_model.state_dict())
            except RuntimeError as exc:
                raise UserInputError(
                    f"--init {init}: its {init_meta.arch!r} weights (hparams {init_meta.hparams}) do not fit the configured model "
                    f"(model.hparams {cfg.model.hparams}); use the checkpoint's hparams"
                ) from exc
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
    saved_rng: dict[str, Any] | None = None
    if resume:
        if not state_path.is_file():
            raise UserInputError(f"--resume: no {STATE_NAME} in {out_dir}")
        state = load_state(state_path, model, device, f"{cfg.model.arch!r} with hparams {cfg.model.hparams}")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler.is_enabled() and not state["scaler"]:
                # saved with AMP off (a CPU run, or amp = false); load_state_dict refuses an empty state
                log.warning("%s was saved without AMP: the gradient scaler starts afresh", state_path)
            else:
                scaler.load_state_dict(state["scaler"])
            start_epoch, best_score, best_epoch, stale = (
                int(state["epoch"]) + 1,
                float(state["best_score"]),
                int(state["best_epoch"]),
                int(state["stale"]),
            )
            best_metrics = {str(k): float(v) for k, v in dict(state["best_metrics"]).items()}
            seconds_before = float(state.get("seconds", 0.0))
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserInputError(f"--resume: {state_path} does not fit this run: {reason}") from exc
        saved_rng = state.get("rng")
        if saved_rng is None:
            log.warning(
                "%s holds no random-number state (an older version wrote it): dropout will differ from an uninterrupted run", state_path
            )
        log.info("resuming at epoch %d", start_epoch + 1)

    # --- checks passed: write
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        cut_metrics(out_dir / METRICS_NAME, start_epoch)
    else:
        clear_run(out_dir)
    (out_dir / "config.json").write_text(json.dumps(cfg.model_dump(), indent=2))
    if saved_rng is not None:
        try:
            set_rng_state(saved_rng)
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise UserInputError(f"--resume: {state_path}: unreadable random-number state ({exc})") from exc

    csv_log = _CsvLog(out_dir / METRICS_NAME, append=resume)
    # on resume, TensorBoard drops events from the epoch after the saved one on (an interrupted session's)
    writer = SummaryWriter(str(out_dir / TB_NAME), purge_step=start_epoch + 1 if resume else None)
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
        train_loader = _loader(train_ds, cfg, shuffle=True, seed=shuffle_seed(cfg.seed, epoch))
        bar = tqdm(
            batches(train_loader),
            total=len(train_loader),
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
            loss_value = float(parts.total.detach())
            if not math.isfinite(loss_value):
                writer.close()
                raise NonFiniteLossError(
                    f"epoch {epoch + 1}, batch {n_batches + 1}: the training loss is {loss_value}, the run diverged "
                    f"(lower optim.lr, check the data); {out_dir} keeps the last good epoch's files"
                )
            scaler.scale(parts.total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n_batches += 1
            sums["loss"] += loss_value
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
        score = float(val[cfg.monitor])
        if math.isnan(score):
            log.warning("epoch %d: validation %s is NaN; counted as no improvement", epoch + 1, cfg.monitor)
        improved = score > best_score  # False for NaN
        if improved or best_epoch < 0:  # the first epoch always gives a best.pt, even with a NaN score
            if improved:
                best_score, stale = score, 0
            else:
                stale += 1
            best_epoch, best_metrics = epoch, val
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
        save_state(
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
                "rng": rng_state(device),
                "arch": cfg.model.arch,
                "hparams": cfg.model.hparams,
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
