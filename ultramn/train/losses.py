"""The combined multitask loss: plane cross-entropy + mask Dice + mask BCE or focal,
plus an optional temporal term on the frame-to-frame change of the nerve area.

Shapes: plane logits ``[B,4]``, plane targets ``int64 [B]`` (-1 = no label, ignored);
mask logits and targets ``[B,1,T,H,W]``; ``valid`` ``[B,T]`` marks real (not padded)
frames: padded frames repeat a real one and are excluded so short clips are not
over-weighted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ultramn.train.config import LossSection


@dataclass
class LossParts:
    """The total and its parts (detached floats for logging)."""

    total: torch.Tensor
    plane: float
    dice: float
    pixel: float
    temporal: float = 0.0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per frame, averaged over frames with ``weight`` ``[N]`` (masks ``[N,H,W]``).

    Per-frame Dice matches how the product is scored (per-frame Dice); ``eps`` smooths
    frames whose ground truth is empty.
    """
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum(dim=(-2, -1))
    denom = probs.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
    dice = (2 * inter + eps) / (denom + eps)
    return ((1 - dice) * weight).sum() / weight.sum().clamp_min(1.0)


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, cfg: LossSection) -> torch.Tensor:
    """Per-pixel BCE or focal loss on ``[N,H,W]`` masks, frame-weighted by ``weight`` ``[N]``."""
    pos_weight = torch.tensor(cfg.pos_weight, device=logits.device, dtype=logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pos_weight)
    if cfg.pixel_loss == "focal":
        p_t = torch.exp(-F.binary_cross_entropy_with_logits(logits, target, reduction="none"))
        bce = bce * (1 - p_t) ** cfg.focal_gamma
    per_frame = bce.mean(dim=(-2, -1))
    return (per_frame * weight).sum() / weight.sum().clamp_min(1.0)


def temporal_area_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, floor_fraction: float = 0.01) -> torch.Tensor:
    """Mean |ΔA_pred - ΔA_truth| over adjacent real frame pairs, relative to the window's mean true area.

    ``logits`` and ``target`` ``[B,T,H,W]``, ``valid`` ``[B,T]``. ``A`` is the soft mask area
    (sum of probabilities, pixels); the error is divided by the window's mean true area
    (at least ``floor_fraction`` of the frame, so windows without a nerve stay bounded).
    This is the training-time form of the temporal-stability metric (mean |ΔCSA| predicted
    vs truth): it penalises area jitter the ground truth does not have, and missed real
    changes. A frame-wise model receives it too; only a temporal model can use
    neighbouring frames to meet it.
    """
    if logits.shape[1] < 2:
        return logits.sum() * 0.0
    area = torch.sigmoid(logits).sum(dim=(-2, -1))
    truth = target.sum(dim=(-2, -1))
    real = valid.float()
    pairs = real[:, 1:] * real[:, :-1]
    floor = floor_fraction * logits.shape[-1] * logits.shape[-2]
    scale = ((truth * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0)).clamp_min(floor)
    err = ((area[:, 1:] - area[:, :-1]) - (truth[:, 1:] - truth[:, :-1])).abs() / scale[:, None]
    return (err * pairs).sum() / pairs.sum().clamp_min(1.0)


def multitask_loss(
    plane_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    plane_target: torch.Tensor,
    mask_target: torch.Tensor,
    valid: torch.Tensor,
    cfg: LossSection,
) -> LossParts:
    """Weighted sum of the terms (see the module docstring for shapes); the temporal term only when weighted."""
    b, _, t, h, w = mask_logits.shape
    logits = mask_logits.float().reshape(b * t, h, w)
    target = mask_target.float().reshape(b * t, h, w)
    weight = valid.float().reshape(b * t)
    dice = soft_dice_loss(logits, target, weight)
    pix = pixel_loss(logits, target, weight, cfg)
    labelled = plane_target >= 0
    if bool(labelled.any()):
        plane = F.cross_entropy(plane_logits.float()[labelled], plane_target[labelled])
    else:
        plane = plane_logits.sum() * 0.0
    total = cfg.plane_weight * plane + cfg.dice_weight * dice + cfg.pixel_weight * pix
    temporal = 0.0
    if cfg.temporal_weight > 0:
        term = temporal_area_loss(logits.reshape(b, t, h, w), target.reshape(b, t, h, w), valid)
        total = total + cfg.temporal_weight * term
        temporal = float(term.detach())
    return LossParts(total=total, plane=float(plane.detach()), dice=float(dice.detach()), pixel=float(pix.detach()), temporal=temporal)
