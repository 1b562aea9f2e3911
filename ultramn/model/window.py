"""Window wrappers that let the 2D reference models speak the window contract."""

from __future__ import annotations

from typing import Any

import torch

from ultramn.model.base import WindowModel, fold_time, mean_over_time, unfold_time
from ultramn.model.classifier2d import PlaneClassifier2D
from ultramn.model.unet2d import MultitaskUNet2D, UNet2D


class FramewiseMultitask(WindowModel):
    """A :class:`MultitaskUNet2D` applied frame by frame to windows.

    ``[B,1,T,H,W]`` -> T folded into the batch -> per-frame ``(plane [B*T,P], mask [B*T,1,H,W])``
    -> ``(plane_logits [B,P]`` = mean of the frames' logits over T, ``mask_logits [B,1,T,H,W])``.
    Constructor arguments are those of :class:`MultitaskUNet2D`.
    """

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.net = MultitaskUNet2D(**hparams)
        self.n_planes = self.net.n_planes
        self.spatial_divisor = self.net.spatial_divisor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,1,T,H,W]`` -> ``(plane_logits [B,P], mask_logits [B,1,T,H,W])``."""
        self.check_window(x)
        t = x.shape[2]
        plane, mask = self.net(fold_time(x))
        return mean_over_time(plane, t), unfold_time(mask, t)


class UNet2DPair(WindowModel):
    """The two-model pipeline as one module: :class:`UNet2D` for masks + :class:`PlaneClassifier2D` for planes.

    ``[B,1,T,H,W]`` -> both nets frame by frame -> ``(plane_logits [B,P]`` = mean over T of
    the classifier's logits, ``mask_logits [B,1,T,H,W])``.

    Args:
        n_planes: plane classes (4).
        base_width, depth, norm, dropout: the :class:`UNet2D`'s.
        classifier_width, classifier_stages, head_dropout: the :class:`PlaneClassifier2D`'s
            ``base_width``, ``n_stages`` and ``head_dropout``.
    """

    def __init__(
        self,
        n_planes: int = 4,
        base_width: int = 8,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.1,
        classifier_width: int = 8,
        classifier_stages: int = 4,
        head_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.unet = UNet2D(base_width=base_width, depth=depth, norm=norm, dropout=dropout)
        self.classifier = PlaneClassifier2D(
            n_planes=n_planes, base_width=classifier_width, n_stages=classifier_stages, norm=norm, head_dropout=head_dropout
        )
        self.n_planes = n_planes
        self.spatial_divisor = max(self.unet.spatial_divisor, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,1,T,H,W]`` -> ``(plane_logits [B,P], mask_logits [B,1,T,H,W])``."""
        self.check_window(x)
        t = x.shape[2]
        frames = fold_time(x)
        return mean_over_time(self.classifier(frames), t), unfold_time(self.unet(frames), t)
