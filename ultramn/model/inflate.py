"""Inflate a frame-wise 2D multitask U-Net into its 3D twin (2D pre-training, then temporal training).

:class:`~ultramn.model.unet3d.MultitaskUNet3D` with factorised blocks and zero-initialised
temporal branches (``temporal_residual=True``, the product's design) computes exactly what
:class:`~ultramn.model.window.FramewiseMultitask` of the same width, depth and norm computes,
once every spatial weight is copied across: each ``(1,3,3)`` convolution is the 2D ``3x3``
with a time axis of length 1, the temporal branches add 0, and the plane head's mean over
``T,H,W`` before its linear layer equals the mean of the frames' logits. So a trained 2D
reference can start the 3D network, which then only has to learn what neighbouring frames add.
"""

from __future__ import annotations

import re

from torch import nn

from ultramn.model.blocks import TemporalResidual
from ultramn.model.unet3d import MultitaskUNet3D
from ultramn.model.window import FramewiseMultitask

#: 2D module type -> the 3D type that takes its weights
_TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: nn.Conv3d,
    nn.ConvTranspose2d: nn.ConvTranspose3d,
    nn.BatchNorm2d: nn.BatchNorm3d,
    nn.InstanceNorm2d: nn.InstanceNorm3d,
    nn.GroupNorm: nn.GroupNorm,
    nn.Linear: nn.Linear,
}

#: a layer's index inside a residual block's body (the 3D body has the temporal branch in the middle)
_BLOCK_LAYER = re.compile(r"body\.\d+")


class InflationError(ValueError):
    """The 2D model's weights do not fit the 3D model (other width, depth, norm or block design)."""


def _weighted_modules(model: nn.Module, skip: type[nn.Module] | None = None) -> list[tuple[str, nn.Module]]:
    """Modules that hold tensors of their own, in registration order, leaving out ``skip`` subtrees."""
    skipped: list[str] = []
    out: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in skipped):
            continue
        if skip is not None and isinstance(module, skip):
            skipped.append(name)
            continue
        if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            out.append((name, module))
    return out


def inflate_framewise(source: FramewiseMultitask, target: MultitaskUNet3D) -> list[str]:
    """Copy ``source``'s weights and norm statistics into ``target``, in place.

    ``target`` must be built with ``factorised=True`` and ``temporal_residual=True`` and the
    same ``base_width``, ``depth`` and ``norm`` as ``source``. Its temporal branches
    (:class:`~ultramn.model.blocks.TemporalResidual`) keep their zero-scale initialisation,
    so the inflated network's output equals ``source``'s on any window ``[B,1,T,H,W]``.
    Returns the names of ``target``'s parameters that were not copied (the temporal branches').
    Raises :class:`InflationError` when the two do not pair up module for module.
    """
    if not any(isinstance(m, TemporalResidual) for m in target.modules()):
        raise InflationError("the 3D model has no zero-initialised temporal branches (needs temporal_residual = true, temporal_kernel > 1)")
    pairs_2d = _weighted_modules(source.net)
    pairs_3d = _weighted_modules(target, skip=TemporalResidual)
    if len(pairs_2d) != len(pairs_3d):
        raise InflationError(
            f"the 2D model has {len(pairs_2d)} weighted layers, the 3D model {len(pairs_3d)} outside its temporal branches: "
            "base_width, depth and norm must match"
        )
    for (name_2d, mod_2d), (name_3d, mod_3d) in zip(pairs_2d, pairs_3d, strict=True):
        if _BLOCK_LAYER.sub("body", name_2d) != _BLOCK_LAYER.sub("body", name_3d) or _TWINS.get(type(mod_2d)) is not type(mod_3d):
            raise InflationError(f"layer {name_2d} ({type(mod_2d).__name__}) has no twin at {name_3d} ({type(mod_3d).__name__})")
        state_3d = mod_3d.state_dict()
        for key, value in mod_2d.state_dict().items():
            want = state_3d[key].shape
            tensor = value.unsqueeze(2) if value.ndim + 1 == len(want) and value.ndim >= 3 else value
            if tensor.shape != want:
                raise InflationError(f"{name_3d}.{key}: 2D shape {tuple(value.shape)} does not fit 3D shape {tuple(want)}")
            state_3d[key] = tensor.clone()
        mod_3d.load_state_dict(state_3d)
    copied = {f"{name}.{key}" for name, module in pairs_3d for key, _ in module.named_parameters(recurse=False)}
    return [name for name, _ in target.named_parameters() if name not in copied]
