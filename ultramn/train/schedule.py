"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio`` (per step)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose factor rises linearly for ``warmup_steps``, then follows a cosine."""
    total = max(total_steps, 1)
    warm = max(min(warmup_steps, total - 1), 0)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = min((step - warm) / max(total - warm, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
