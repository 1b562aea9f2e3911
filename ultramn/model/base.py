"""The window-in/window-out interface every model of the project implements.

Training, evaluation and export treat all architectures alike: a window of frames
``[B,1,T,H,W] float32`` goes in, ``(plane_logits [B,n_planes], mask_logits [B,1,T,H,W])``
comes out (the contract in :mod:`ultramn.contract`).
"""

from __future__ import annotations

import torch
from torch import nn


class InputShapeError(ValueError):
    """An input tensor does not satisfy a model's shape contract."""


def _tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def check_input(x: torch.Tensor, *, ndim: int, channels: int, divisor: int, min_size: int = 1, name: str = "model") -> None:
    """Raise :class:`InputShapeError` unless ``x`` is ``[B,channels,...,H,W]`` with H, W multiples of ``divisor``.

    Checks are skipped while tracing for ONNX export (the shapes are fixed there anyway).
    """
    if _tracing():
        return
    layout = "[B,C,T,H,W]" if ndim == 5 else "[B,C,H,W]"
    if x.ndim != ndim:
        raise InputShapeError(f"{name} expects a {ndim}-D input {layout}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise InputShapeError(f"{name} expects {channels} input channel(s), got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or any(s < 1 for s in x.shape[2:]):
        raise InputShapeError(f"{name} got an empty input of shape {tuple(x.shape)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % divisor or w % divisor or h < min_size or w < min_size:
        raise InputShapeError(f"{name} needs H and W divisible by {divisor} (and >= {max(min_size, divisor)}), got H={h}, W={w}")
    if not x.is_floating_point():
        raise InputShapeError(f"{name} expects a floating-point input, got {x.dtype}")


class WindowModel(nn.Module):
    """Base class: ``[B,1,T,H,W] float32`` -> ``(plane_logits [B,n_planes], mask_logits [B,1,T,H,W])``.

    Subclasses set :attr:`n_planes` and :attr:`spatial_divisor` (H and W must be multiples
    of it) and implement :meth:`forward`. Any ``T >= 1`` is valid for every model here.
    """

    n_planes: int
    spatial_divisor: int

    def check_window(self, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``x`` is a valid window batch for this model."""
        check_input(x, ndim=5, channels=1, divisor=self.spatial_divisor, name=type(self).__name__)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """``[B,1,T,H,W]`` -> ``(plane_logits [B,n_planes], mask_logits [B,1,T,H,W])``."""
        raise NotImplementedError


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``[B,C,T,H,W]`` -> ``[B*T,C,H,W]`` (frame ``t`` of window ``b`` at row ``b*T+t``)."""
    _, c, _, h, w = x.shape
    return x.transpose(1, 2).reshape(-1, c, h, w)


def unfold_time(y: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of :func:`fold_time`: ``[B*T,C,H,W]`` -> ``[B,C,T,H,W]``."""
    _, c, h, w = y.shape
    return y.reshape(-1, t, c, h, w).transpose(1, 2)


def mean_over_time(logits: torch.Tensor, t: int) -> torch.Tensor:
    """Per-frame logits ``[B*T,P]`` -> per-window logits ``[B,P]`` (mean over T)."""
    return logits.reshape(-1, t, logits.shape[-1]).mean(dim=1)
