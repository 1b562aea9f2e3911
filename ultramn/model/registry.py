"""The model factory: one name per architecture, hyper-parameters as keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ultramn.model.base import WindowModel
from ultramn.model.unet3d import MultitaskUNet3D
from ultramn.model.window import FramewiseMultitask, UNet2DPair

#: Architecture name -> constructor of a :class:`WindowModel`.
ARCHS: dict[str, Callable[..., WindowModel]] = {
    "unet3d": MultitaskUNet3D,
    "unet2d_pair": UNet2DPair,
    "unet2d_multitask": FramewiseMultitask,
}


def build_model(arch: str, **hparams: Any) -> WindowModel:
    """Build the window model called ``arch`` (a key of :data:`ARCHS`) with ``hparams``.

    Every result maps ``[B,1,T,H,W]`` -> ``(plane_logits [B,4], mask_logits [B,1,T,H,W])``.
    Unknown names or hyper-parameters raise :class:`ValueError`.
    """
    try:
        ctor = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}") from None
    try:
        return ctor(**hparams)
    except TypeError as exc:
        raise ValueError(f"bad hyper-parameters for {arch!r}: {exc}") from exc
