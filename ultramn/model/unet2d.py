"""2D reference networks: frame-by-frame segmentation, with or without a plane head."""

from __future__ import annotations

import torch
from torch import nn

from ultramn.contract import PLANES
from ultramn.model.base import check_input
from ultramn.model.blocks import PlaneHead, UNetBackbone


class UNet2D(nn.Module):
    """Frame-wise 2D U-Net for nerve segmentation.

    Input ``[B, 1, H, W] float32`` with H and W divisible by ``2**depth``; output mask
    logits ``[B, 1, H, W]``. Same residual blocks, norm and skip layout as the 3D model,
    with 3x3 convolutions and no temporal mixing.

    Args:
        in_channels: input channels (1).
        base_width: channels at full resolution; level ``i`` has ``base_width * 2**i``.
        depth: number of 2x downsamplings.
        norm: ``"batch"``, ``"group"`` or ``"instance"``.
        dropout: channel dropout on the bottleneck.
    """

    def __init__(self, in_channels: int = 1, base_width: int = 8, depth: int = 4, norm: str = "batch", dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.spatial_divisor = 2**depth
        self.backbone = UNetBackbone(2, in_channels=in_channels, base_width=base_width, depth=depth, norm=norm, dropout=dropout)
        self.mask_head = nn.Conv2d(self.backbone.out_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,1,H,W]`` -> mask logits ``[B,1,H,W]``."""
        check_input(x, ndim=4, channels=self.in_channels, divisor=self.spatial_divisor, name=type(self).__name__)
        _, top = self.backbone(x)
        return self.mask_head(top)


class MultitaskUNet2D(nn.Module):
    """Frame-wise multitask 2D U-Net: the 3D model's twin without temporal mixing.

    Input ``[B, 1, H, W] float32`` with H and W divisible by ``2**depth``; outputs
    ``(plane_logits [B, n_planes], mask_logits [B, 1, H, W])``.

    Args:
        in_channels: input channels (1).
        n_planes: plane classes (4).
        base_width: channels at full resolution; level ``i`` has ``base_width * 2**i``.
        depth: number of 2x downsamplings.
        norm: ``"batch"``, ``"group"`` or ``"instance"``.
        dropout: channel dropout on the bottleneck.
        head_dropout: dropout before the plane head's linear layer.
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
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.n_planes = n_planes
        self.spatial_divisor = 2**depth
        self.backbone = UNetBackbone(2, in_channels=in_channels, base_width=base_width, depth=depth, norm=norm, dropout=dropout)
        self.mask_head = nn.Conv2d(self.backbone.out_channels, 1, kernel_size=1)
        self.plane_head = PlaneHead(self.backbone.deep_channels, n_planes, head_dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,1,H,W]`` -> ``(plane_logits [B,n_planes], mask_logits [B,1,H,W])``."""
        check_input(x, ndim=4, channels=self.in_channels, divisor=self.spatial_divisor, name=type(self).__name__)
        deep, top = self.backbone(x)
        return self.plane_head(deep), self.mask_head(top)
