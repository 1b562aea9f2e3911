"""The product model: a multitask spatio-temporal U-Net."""

from __future__ import annotations

import torch
from torch import nn

from ultramn.contract import PLANES
from ultramn.model.base import WindowModel
from ultramn.model.blocks import PlaneHead, UNetBackbone


class MultitaskUNet3D(WindowModel):
    """Multitask 3D U-Net: plane recognition and per-frame nerve segmentation in one pass.

    Input contract: ``frames [B, in_channels=1, T, H, W] float32`` (intensities in [0, 1]),
    any ``T >= 1`` (T is never pooled; temporal convolutions zero-pad at the window's
    ends, so ``T=1`` works and is a still image), ``H`` and ``W`` divisible by
    ``2**depth``.

    Outputs: ``(plane_logits [B, n_planes], mask_logits [B, 1, T, H, W])``, both pre-softmax /
    pre-sigmoid, planes in :data:`ultramn.contract.PLANES` order.

    Architecture: a :class:`~ultramn.model.blocks.UNetBackbone` of factorised residual
    blocks (``(1,3,3)`` spatial + ``(kt,1,1)`` temporal convolutions, BatchNorm, ReLU; by
    default the temporal convolution is a zero-initialised residual branch, so the network
    starts as its frame-wise 2D twin and learns temporal mixing on top),
    ``depth`` 2x spatial max-pools, stride-2 transposed-convolution upsampling with skip
    concatenation, channel dropout on the bottleneck; a 1x1x1 convolution gives the mask
    logits and a global-average-pool + dropout + linear head on the deepest features gives
    the plane logits. The defaults (width 8, depth 4) are the configuration chosen by
    measurement in ``docs/model-speed.md`` (>= 40 frames/s on 2 CPU cores in ONNX Runtime
    at 192 x 192).

    Args:
        in_channels: input channels (1: grey ultrasound).
        n_planes: plane classes (4: TW TF LW LF).
        base_width: channels at full resolution; level ``i`` has ``base_width * 2**i``.
        depth: number of 2x spatial downsamplings.
        norm: ``"batch"`` (default, folds into the convolutions in ONNX), ``"group"`` or ``"instance"``.
        dropout: channel dropout on the bottleneck features.
        head_dropout: dropout before the plane head's linear layer.
        temporal_kernel: odd temporal kernel size (1 disables temporal mixing).
        factorised: ``(1,3,3)+(kt,1,1)`` blocks (True) or full ``(kt,3,3)`` convolutions.
        temporal_residual: the temporal convolution as a zero-initialised residual branch
            (:class:`~ultramn.model.blocks.TemporalResidual`, default) or, False, as a plain
            ``conv-norm-ReLU`` inside the block (the first shipped design); needs ``factorised``.
        temporal_branch: the residual branch's parametrisation, ``"scaled_norm"`` (shipped:
            a norm whose scale starts at 0) or ``"zero_conv"`` (a convolution whose weights
            start at 0); both start the network as its frame-wise twin
            (:class:`~ultramn.model.blocks.TemporalResidual`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_planes: int = len(PLANES),
        base_width: int = 8,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.1,
        head_dropout: float = 0.2,
        temporal_kernel: int = 3,
        factorised: bool = True,
        temporal_residual: bool = True,
        temporal_branch: str = "scaled_norm",
    ) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError("the window contract has one channel; in_channels must be 1")
        self.n_planes = n_planes
        self.spatial_divisor = 2**depth
        self.backbone = UNetBackbone(
            3,
            in_channels=in_channels,
            base_width=base_width,
            depth=depth,
            norm=norm,
            dropout=dropout,
            temporal_kernel=temporal_kernel,
            factorised=factorised,
            temporal_residual=temporal_residual,
            temporal_branch=temporal_branch,
        )
        self.mask_head = nn.Conv3d(self.backbone.out_channels, 1, kernel_size=1)
        self.plane_head = PlaneHead(self.backbone.deep_channels, n_planes, head_dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,1,T,H,W]`` -> ``(plane_logits [B,n_planes], mask_logits [B,1,T,H,W])``."""
        self.check_window(x)
        deep, top = self.backbone(x)
        return self.plane_head(deep), self.mask_head(top)
