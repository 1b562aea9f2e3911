"""Checkpoints: weights plus the metadata needed to rebuild and trust the model.

A checkpoint is a ``torch.save``d dict of plain types (loadable with
``torch.load(weights_only=True)``)::

    {"format_version": 1, "arch": str, "hparams": {...}, "window_shape": [T, H, W],
     "planes": [...], "extra": {...}, "state_dict": {name: tensor}}

``extra`` carries training information (``epoch``, ``metrics`` and anything JSON-able).
Loading rebuilds the model with :func:`ultramn.model.registry.build_model` and refuses a
file whose planes or window shape differ from the contract the caller serves.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ultramn.contract import CONTRACT, ModelContract
from ultramn.errors import checkpoint_path_problem
from ultramn.model.registry import build_model

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
_KEYS = ("format_version", "arch", "hparams", "window_shape", "planes", "extra", "state_dict")


#: the longest torch message a :class:`CheckpointError` quotes (``load_state_dict`` lists every weight)
MAX_QUOTED_CHARS = 600


def one_line(message: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``message`` on one line (torch's ``load_state_dict`` errors span many), cut to ``limit`` characters."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, malformed or does not match the contract."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its model (all plain JSON-able values)."""

    arch: str
    hparams: dict[str, Any]
    window_shape: tuple[int, int, int]
    planes: tuple[str, ...]
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int | None:
        """Training epoch stored in ``extra["epoch"]``, if any."""
        epoch = self.extra.get("epoch")
        return int(epoch) if epoch is not None else None

    @property
    def metrics(self) -> dict[str, Any]:
        """Metrics stored in ``extra["metrics"]`` (empty when absent)."""
        return dict(self.extra.get("metrics") or {})


def _plain(value: Any, what: str) -> Any:
    """``value`` as plain JSON types (tuples become lists); a clear error otherwise."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} must be JSON-serialisable plain data: {exc}") from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    arch: str,
    hparams: dict[str, Any],
    extra: dict[str, Any] | None = None,
    *,
    window_shape: tuple[int, int, int] | None = None,
    planes: tuple[str, ...] | None = None,
) -> Path:
    """Write ``model``'s weights and metadata to ``path`` (parent folders are created).

    ``arch`` and ``hparams`` must rebuild ``model`` via ``build_model(arch, **hparams)``.
    ``window_shape`` and ``planes`` default to :data:`ultramn.contract.CONTRACT`'s.
    ``extra`` holds training info, e.g. ``{"epoch": 12, "metrics": {"dice": 0.9}}``.
    The file is written atomically (temporary file + rename). Returns the path.
    """
    out = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": str(arch),
        "hparams": _plain(hparams, "hparams"),
        "window_shape": [int(v) for v in (window_shape or CONTRACT.window_shape)],
        "planes": [str(p) for p in (planes or CONTRACT.planes)],
        "extra": _plain(extra or {}, "extra"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(payload, out)


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` through a temporary file and a rename: a crash or
    Ctrl-C midway never leaves half a file where the previous one was; ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_failure_reason(exc: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a user's words.

    Torch's own unpickling message advises ``weights_only=False``, which would run code from
    the file; UltraMN checkpoints hold only tensors and plain data, so the advice is wrong here.
    """
    if isinstance(exc, pickle.UnpicklingError):
        return "not a PyTorch file of tensors and plain data (an UltraMN checkpoint holds nothing else)"
    # an empty file (EOFError), text or other bytes (KeyError: an unknown pickle opcode), a cut or foreign ZIP
    # (torch's own message speaks of miniz and "central directory"; some cuts make it seek before the start: EINVAL)
    damaged = ("PytorchStreamReader", "inline_container", "Invalid magic number")
    if (
        isinstance(exc, EOFError | KeyError)
        or (isinstance(exc, RuntimeError) and any(m in str(exc) for m in damaged))
        or (isinstance(exc, OSError) and exc.errno == errno.EINVAL)
    ):
        return "not a PyTorch checkpoint file, or a damaged one (empty or cut short?)"
    text = str(exc).strip()
    return f"{text.splitlines()[0] if text else 'not a PyTorch checkpoint file'} ({type(exc).__name__})"


def read_checkpoint_meta(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read a checkpoint safely (``weights_only=True``): its metadata and state dict, unchecked."""
    p = Path(path)
    problem = checkpoint_path_problem(p)
    if problem is not None:
        raise CheckpointError(f"checkpoint {problem}")
    try:
        raw = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"cannot read checkpoint {p}: {load_failure_reason(exc)}") from exc
    if not isinstance(raw, dict) or any(k not in raw for k in _KEYS):
        missing = [k for k in _KEYS if not isinstance(raw, dict) or k not in raw]
        raise CheckpointError(f"{p} is not an UltraMN checkpoint (missing {missing})")
    if raw["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format {raw['format_version']}; this version reads {FORMAT_VERSION}")
    shape = tuple(int(v) for v in raw["window_shape"])
    if len(shape) != 3:
        raise CheckpointError(f"{p}: window_shape must be (T, H, W), got {raw['window_shape']}")
    meta = CheckpointMeta(
        arch=str(raw["arch"]),
        hparams=dict(raw["hparams"]),
        window_shape=(shape[0], shape[1], shape[2]),
        planes=tuple(str(x) for x in raw["planes"]),
        format_version=int(raw["format_version"]),
        extra=dict(raw["extra"]),
    )
    return meta, raw["state_dict"]


def check_contract(meta: CheckpointMeta, contract: ModelContract = CONTRACT, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``meta``'s planes and window shape are ``contract``'s."""
    if tuple(meta.planes) != tuple(contract.planes):
        raise CheckpointError(f"{source} was trained with planes {list(meta.planes)}, but the contract is {list(contract.planes)}")
    if tuple(meta.window_shape) != tuple(contract.window_shape):
        raise CheckpointError(f"{source} was trained with window (T,H,W)={meta.window_shape}, but the contract is {contract.window_shape}")


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    contract: ModelContract | None = CONTRACT,
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model stored at ``path``; returns ``(model in eval mode, meta)``.

    Safe loading (``weights_only=True``). Raises :class:`CheckpointError` when the file is
    missing or malformed, its weights do not fit its architecture, or its planes / window
    shape differ from ``contract`` (pass ``contract=None`` to skip that check, e.g. to
    inspect or fine-tune an old checkpoint).
    """
    meta, state = read_checkpoint_meta(path, map_location)
    if contract is not None:
        check_contract(meta, contract, source=str(path))
    try:
        model = build_model(meta.arch, **meta.hparams)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit arch {meta.arch!r} with {meta.hparams}: {one_line(str(exc))}") from exc
    model.to(map_location)
    model.eval()
    return model, meta
