"""Inflating a trained 2D multitask U-Net into its 3D twin: same output, temporal branches at zero."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ultramn.model import FramewiseMultitask, MultitaskUNet3D
from ultramn.model.blocks import TemporalResidual
from ultramn.model.inflate import InflationError, inflate_framewise

HP: dict[str, Any] = {"base_width": 4, "depth": 2}


def trained_looking_2d(seed: int = 0) -> FramewiseMultitask:
    """A 2D model whose every weight and norm statistic is random (as after training, unlike a fresh init)."""
    torch.manual_seed(seed)
    model = FramewiseMultitask(**HP)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand_like(tensor) * 0.5 + 0.5 if tensor.ndim == 1 else torch.randn_like(tensor) * 0.3)
    return model.eval()


@pytest.mark.parametrize("branch", ["scaled_norm", "zero_conv"])
def test_the_inflated_3d_model_computes_what_the_2d_model_computes(branch: str) -> None:
    source = trained_looking_2d()
    target = MultitaskUNet3D(**HP, temporal_branch=branch)
    untouched = inflate_framewise(source, target)
    target.eval()
    x = torch.rand(2, 1, 5, 32, 16)
    with torch.no_grad():
        plane_2d, mask_2d = source(x)
        plane_3d, mask_3d = target(x)
    assert torch.allclose(plane_3d, plane_2d, atol=1e-5)
    assert torch.allclose(mask_3d, mask_2d, atol=1e-5)
    assert mask_2d.std() > 0.1  # the random weights give a signal worth comparing
    temporal = {n for n, _ in target.named_parameters() if ".body.3." in n}
    assert temporal and set(untouched) == temporal
    assert all(float(m.gain().max()) == 0.0 for m in target.modules() if isinstance(m, TemporalResidual))


def test_growing_a_temporal_branch_after_inflation_changes_the_output() -> None:
    source = trained_looking_2d()
    target = MultitaskUNet3D(**HP)
    inflate_framewise(source, target)
    branch = next(m for m in target.modules() if isinstance(m, TemporalResidual))
    with torch.no_grad():
        branch.scale.fill_(1.0)
        conv_weight = branch.conv.weight
        assert isinstance(conv_weight, torch.Tensor)
        torch.nn.init.normal_(conv_weight)
    target.eval()
    x = torch.rand(1, 1, 4, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(target(x)[1], source(x)[1], atol=1e-3)


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"base_width": 4, "depth": 3}, "weighted layers"),
        ({"base_width": 8, "depth": 2}, "does not fit"),
        ({"base_width": 4, "depth": 2, "temporal_residual": False}, "temporal_residual"),
        ({"base_width": 4, "depth": 2, "norm": "group"}, "no twin"),
    ],
)
def test_a_3d_model_that_is_not_the_twin_is_refused(hparams: dict[str, Any], message: str) -> None:
    with pytest.raises(InflationError, match=message):
        inflate_framewise(trained_looking_2d(), MultitaskUNet3D(**hparams))
