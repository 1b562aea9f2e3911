"""Networks: the multitask 3D U-Net (the product) and the 2D reference models.

Every model built by :func:`build_model` maps a window ``[B,1,T,H,W] float32`` to
``(plane_logits [B,4], mask_logits [B,1,T,H,W])``.
"""

from ultramn.model.base import InputShapeError, WindowModel
from ultramn.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from ultramn.model.classifier2d import PlaneClassifier2D
from ultramn.model.registry import ARCHS, build_model
from ultramn.model.unet2d import MultitaskUNet2D, UNet2D
from ultramn.model.unet3d import MultitaskUNet3D
from ultramn.model.window import FramewiseMultitask, UNet2DPair

__all__ = [
    "ARCHS",
    "CheckpointError",
    "CheckpointMeta",
    "FramewiseMultitask",
    "InputShapeError",
    "MultitaskUNet2D",
    "MultitaskUNet3D",
    "PlaneClassifier2D",
    "UNet2D",
    "UNet2DPair",
    "WindowModel",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
