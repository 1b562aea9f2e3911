"""Typed training configuration, read from a TOML file (``ultramn train --config FILE``).

Every knob of a training run lives here; the window shape is not a knob: it comes from
:data:`ultramn.contract.CONTRACT` (the served model must match what was trained).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ultramn.contract import CONTRACT
from ultramn.errors import UserInputError

Arch = Literal["unet3d", "unet2d_pair", "unet2d_multitask"]


class _Strict(BaseModel):
    # inf / nan pass ``gt``/``ge`` bounds (``lr = inf``) and only show up as a NaN checkpoint
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def non_finite_numbers(value: Any, where: str = "") -> list[str]:
    """Dotted paths of every inf or nan float inside ``value`` (nested dicts and lists)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "value"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_numbers(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in non_finite_numbers(v, f"{where}[{i}]")]
    return []


def _finite(value: dict[str, Any]) -> dict[str, Any]:
    bad = non_finite_numbers(value)
    if bad:
        raise ValueError(f"numbers must be finite, got inf or nan at {', '.join(bad)}")
    return value


class ModelSection(_Strict):
    """Which network and its constructor hyper-parameters."""

    arch: Arch = "unet3d"
    #: keyword arguments of the architecture's constructor; checked when training starts
    #: (:func:`ultramn.train.loop.check_model` builds the model and runs one window)
    hparams: dict[str, Any] = Field(default_factory=dict)

    _hparams_finite = field_validator("hparams")(_finite)


class LossSection(_Strict):
    """Weights of the combined loss: plane cross-entropy + mask Dice + mask BCE or focal (+ temporal)."""

    plane_weight: float = Field(0.5, ge=0)
    dice_weight: float = Field(1.0, ge=0)
    pixel_weight: float = Field(1.0, ge=0)
    pixel_loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = Field(2.0, ge=0)
    #: positive-class weight of the BCE term (the nerve is a small fraction of the image)
    pos_weight: float = Field(1.0, gt=0)
    #: weight of the temporal area term (|ΔA_pred - ΔA_truth| between adjacent frames,
    #: relative to the window's true area); 0 = off
    temporal_weight: float = Field(0.0, ge=0)


class OptimSection(_Strict):
    """AdamW with linear warm-up then cosine decay (per optimiser step)."""

    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    min_lr_ratio: float = Field(0.02, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)


class DataSection(_Strict):
    """Where the windows come from and how many per epoch."""

    root: str = "data/synth"
    windows_per_clip: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1)
    #: data-loader processes (each holds a cache and a copy of the dataset index: more than 64 is a typo)
    num_workers: int = Field(2, ge=0, le=64)
    #: per-process cache of decoded, resized clips (MB). DataLoader workers start afresh every
    #: epoch, so the cache lasts across epochs only with ``num_workers = 0`` (the main process)
    cache_mb: float = Field(512.0, ge=0)
    eval_stride: int | None = Field(None, ge=1, le=CONTRACT.window_frames)
    max_train_clips: int | None = Field(None, ge=1)
    max_val_clips: int | None = Field(None, ge=1)
    #: fields of :class:`ultramn.data.augment.AugmentConfig` (validated here)
    augment: dict[str, Any] = Field(default_factory=dict)

    @field_validator("augment")
    @classmethod
    def _check_augment(cls, value: dict[str, Any]) -> dict[str, Any]:
        from ultramn.data.augment import AugmentConfig

        _finite(value)
        try:
            AugmentConfig.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'augment'}: {err['msg']}" for err in exc.errors(include_url=False)
            )
            raise ValueError(f"invalid augmentation settings: {problems}") from None
        return value


#: the largest seed: numpy's SeedSequence takes no negative seed and torch's generators none above
#: ``2**64 - 1``; the same bound as ``ultramn synth --seed``
MAX_SEED = 2**63 - 1


class TrainConfig(_Strict):
    """A whole training run."""

    seed: int = Field(0, ge=0, le=MAX_SEED, strict=True)  # strict: `seed = true` is not 1
    epochs: int = Field(30, ge=1)
    early_stopping_patience: int = Field(8, ge=1)
    #: validation score to maximise for best-checkpoint selection
    monitor: Literal["score", "dice", "plane_accuracy"] = "score"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    threads: int | None = Field(None, ge=1, le=1024)
    #: wall-clock budget of one session in minutes: no new epoch starts once the time used plus
    #: the last epoch's duration would overrun it (the cosine schedule is then cut short);
    #: a ``--resume``d session gets the whole budget again (it fits a job's time limit);
    #: None = no budget
    max_minutes: float | None = Field(None, gt=0)
    model: ModelSection = ModelSection()
    loss: LossSection = LossSection()
    optim: OptimSection = OptimSection()
    data: DataSection = DataSection()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.loss.plane_weight + self.loss.dice_weight + self.loss.pixel_weight <= 0:
            raise ValueError("at least one loss weight must be positive")
        return self

    def with_overrides(self, **sections: Any) -> TrainConfig:
        """A copy with some top-level or section fields replaced (e.g. ``data={"root": ...}``)."""
        raw = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return TrainConfig.model_validate(raw)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["data.num_workers=0", "epochs=40"]`` -> ``{"data": {"num_workers": 0}, "epochs": 40}``.

    Values are TOML (``0``, ``2.5``, ``true``, ``"text"``, ``[1, 2]``); anything that does not parse
    as TOML is taken as a string. Keys are ``field`` or ``section.field``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts) or len(parts) > 2:
            raise UserInputError(f"--set expects field=value or section.field=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        if len(parts) == 1:
            out[parts[0]] = value
        else:
            out.setdefault(parts[0], {})[parts[1]] = value
    return out


def load_config(path: Path) -> TrainConfig:
    """Parse and validate a TOML training config; bad files raise :class:`UserInputError`."""
    if path.is_dir():
        raise UserInputError(f"--config {path} is a folder; give the TOML file (e.g. configs/ultramn.toml)")
    if not path.is_file():
        raise UserInputError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not a UTF-8 text file (byte {exc.start}); a training config is TOML text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserInputError(f"{path}: invalid training config:\n{describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``section.field: what is wrong (got value)``, without pydantic's links."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "config"
        got = f" (got {err['input']!r})" if err["type"] not in ("missing", "extra_forbidden") else ""
        lines.append(f"  {where}: {err['msg']}{got}")
    return "\n".join(lines)
