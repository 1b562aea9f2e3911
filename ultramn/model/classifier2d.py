"""A small 2D CNN that recognises the imaging plane of one frame."""

from __future__ import annotations

import torch
from torch import nn

from ultramn.contract import PLANES
from ultramn.model.base import check_input
from ultramn.model.blocks import PlaneHead, ResBlock


class PlaneClassifier2D(nn.Module):
    """Frame-wise plane classifier: ``[B, 1, H, W] float32`` -> plane logits ``[B, n_planes]``.

    ``n_stages`` stages of a 2D :class:`~ultramn.model.blocks.ResBlock` followed by a 2x
    max-pool (widths ``base_width * 2**i``), then global average pool + dropout + linear.
    Any H, W >= ``2**n_stages`` is valid (no divisibility needed: pooling floors).

    Args:
        in_channels: input channels (1).
        n_planes: plane classes (4).
        base_width: channels of the first stage.
        n_stages: number of block + pool stages.
        norm: ``"batch"``, ``"group"`` or ``"instance"``.
        head_dropout: dropout before the linear layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_planes: int = len(PLANES),
        base_width: int = 8,
        n_stages: int = 4,
        norm: str = "batch",
        head_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if n_stages < 1:
            raise ValueError(f"n_stages must be >= 1, got {n_stages}")
        self.in_channels = in_channels
        self.n_planes = n_planes
        self.min_size = 2**n_stages
        widths = [base_width * 2**i for i in range(n_stages)]
        stages: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            stages += [ResBlock(2, cin, w, norm=norm), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*stages)
        self.head = PlaneHead(widths[-1], n_planes, head_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,1,H,W]`` -> ``[B,n_planes]``."""
        check_input(x, ndim=4, channels=self.in_channels, divisor=1, min_size=self.min_size, name=type(self).__name__)
        return self.head(self.features(x))
