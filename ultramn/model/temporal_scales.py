"""How far a trained model's zero-initialised temporal branches have grown.

Each :class:`~ultramn.model.blocks.TemporalResidual` adds a branch to its input that is 0 at
initialisation, so the branch's gain per channel (:meth:`~ultramn.model.blocks.TemporalResidual.gain`)
says how much temporal mixing training has switched on. For the shipped ``scaled_norm`` branch
(``norm(conv_t(y))``) it is the norm's absolute scale (the spatial path carries scales of about
1); for a ``zero_conv`` branch (``conv_t(y)``) the L2 norm of each output channel's weights.

Usage::

    python -m ultramn.model.temporal_scales models/ultramn.pt
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ultramn.model.blocks import TemporalResidual


@dataclass(frozen=True)
class BranchScale:
    """Gains of one temporal branch over its channels (dimensionless; 0 = branch off)."""

    name: str
    mean_abs: float
    max_abs: float


def temporal_branch_scales(model: nn.Module) -> list[BranchScale]:
    """One :class:`BranchScale` per :class:`TemporalResidual` in ``model``, in module order (empty if none)."""
    out: list[BranchScale] = []
    for name, module in model.named_modules():
        if isinstance(module, TemporalResidual):
            weight = module.gain()
            out.append(BranchScale(name, float(weight.mean()), float(weight.max())))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the branch scales of a checkpoint; exit 2 on a bad path or a model without branches."""
    from ultramn.errors import UserInputError
    from ultramn.model.checkpoint import load_checkpoint

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ultramn.model.temporal_scales CHECKPOINT", file=sys.stderr)
        return 2
    try:
        model, meta = load_checkpoint(Path(args[0]))
    except (UserInputError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scales = temporal_branch_scales(model)
    if not scales:
        print(f"error: {args[0]} ({meta.arch}, {meta.hparams}) has no zero-initialised temporal branches", file=sys.stderr)
        return 2
    kinds = sorted({m.branch for m in model.modules() if isinstance(m, TemporalResidual)})
    print(f"temporal branches: {', '.join(kinds)} (gain: absolute norm scale for scaled_norm, weight L2 norm for zero_conv)")
    print("| temporal branch | mean gain | max gain |\n|---|---|---|")
    for s in scales:
        print(f"| {s.name} | {s.mean_abs:.3f} | {s.max_abs:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
