"""Output shapes, shape errors and gradients of every window model."""

from __future__ import annotations

import pytest
import torch

from ultramn.contract import PLANES
from ultramn.model import (
    ARCHS,
    InputShapeError,
    MultitaskUNet2D,
    MultitaskUNet3D,
    PlaneClassifier2D,
    UNet2D,
    build_model,
)
from ultramn.model.blocks import TemporalResidual

SMALL = {"base_width": 4, "depth": 2}
SMALL_PAIR = {**SMALL, "classifier_width": 4, "classifier_stages": 2}


def small(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, **(SMALL_PAIR if arch == "unet2d_pair" else SMALL)).eval()


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize(("b", "t", "h", "w"), [(1, 1, 16, 16), (2, 3, 16, 32), (1, 8, 32, 24)])
def test_window_output_shapes(arch: str, b: int, t: int, h: int, w: int) -> None:
    model = small(arch)
    with torch.no_grad():
        plane, mask = model(torch.rand(b, 1, t, h, w))
    assert plane.shape == (b, len(PLANES))
    assert mask.shape == (b, 1, t, h, w)
    assert plane.dtype == mask.dtype == torch.float32
    assert torch.isfinite(plane).all() and torch.isfinite(mask).all()


@pytest.mark.parametrize("depth", [1, 3])
def test_unet3d_depths_and_options(depth: int) -> None:
    size = 2**depth * 2
    options: tuple[dict[str, object], ...] = (
        {},
        {"temporal_residual": False},
        {"factorised": False, "temporal_residual": False},
        {"temporal_kernel": 1},
        {"norm": "group"},
        {"norm": "instance"},
    )
    for kwargs in options:
        model = MultitaskUNet3D(base_width=4, depth=depth, **kwargs).eval()
        plane, mask = model(torch.rand(2, 1, 3, size, size))
        assert plane.shape == (2, 4) and mask.shape == (2, 1, 3, size, size)


def _framewise(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mask logits of ``x [B,1,T,H,W]`` computed one frame at a time (T=1 windows)."""
    return torch.cat([model(x[:, :, i : i + 1])[1] for i in range(x.shape[2])], dim=2)


def _grow_temporal_branches(model: torch.nn.Module) -> None:
    """Give every zero-initialised temporal branch a non-zero scale (as training does)."""
    for module in model.modules():
        if isinstance(module, TemporalResidual):
            torch.nn.init.ones_(module.scale)


def test_temporal_residual_starts_framewise_then_mixes_frames() -> None:
    """Zero-initialised temporal branches: at init each frame's mask ignores its neighbours; once
    the branch's scale is non-zero, changing one frame changes the next frame's mask.
    (BatchNorm only: group and instance norms pool statistics over T, so they are never frame-wise.)"""
    torch.manual_seed(0)
    model = MultitaskUNet3D(base_width=4, depth=2, temporal_residual=True).eval()
    x = torch.rand(2, 1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1], _framewise(model, x), atol=1e-5, rtol=1e-5)
        _grow_temporal_branches(model)
        assert not torch.allclose(model(x)[1], _framewise(model, x), atol=1e-3)
        y = x.clone()
        y[:, :, 1] = torch.rand_like(y[:, :, 1])
        assert not torch.allclose(model(x)[1][:, :, 2], model(y)[1][:, :, 2], atol=1e-4)


def test_zero_conv_branch_starts_framewise_and_learns_from_the_first_step() -> None:
    """A ``zero_conv`` branch is the identity at init like ``scaled_norm``, but its weights get a
    gradient at once; the ``scaled_norm`` branch's convolution gets none while its scale is 0."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 4, 16, 16)
    grads: dict[str, float] = {}
    for branch in ("scaled_norm", "zero_conv"):
        model = MultitaskUNet3D(base_width=4, depth=2, temporal_branch=branch)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x)[1], _framewise(model, x), atol=1e-5, rtol=1e-5)
        model.train()
        model(x)[1].square().mean().backward()
        convs = [m.conv.weight.grad for m in model.modules() if isinstance(m, TemporalResidual)]
        assert len(convs) == 5
        grads[branch] = sum(float(g.abs().sum()) for g in convs if g is not None)
    assert grads["scaled_norm"] == 0.0
    assert grads["zero_conv"] > 0.0


def test_zero_conv_branch_mixes_frames_once_grown() -> None:
    torch.manual_seed(0)
    model = MultitaskUNet3D(base_width=4, depth=2, temporal_branch="zero_conv").eval()
    x = torch.rand(2, 1, 4, 16, 16)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TemporalResidual):
                torch.nn.init.normal_(module.conv.weight, std=0.5)
        y = x.clone()
        y[:, :, 1] = torch.rand_like(y[:, :, 1])
        assert not torch.allclose(model(x)[1][:, :, 2], model(y)[1][:, :, 2], atol=1e-4)


def test_unknown_temporal_branch_is_refused() -> None:
    with pytest.raises(ValueError, match="temporal_branch"):
        MultitaskUNet3D(base_width=4, depth=2, temporal_branch="gated")


def test_plain_temporal_block_mixes_frames_from_init() -> None:
    """The first shipped design (temporal conv-norm-ReLU inside the block) is not frame-wise at init."""
    torch.manual_seed(0)
    model = MultitaskUNet3D(base_width=4, depth=2, temporal_residual=False).eval()
    x = torch.rand(2, 1, 4, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model(x)[1], _framewise(model, x), atol=1e-3)


def test_temporal_residual_needs_factorised_blocks() -> None:
    with pytest.raises(ValueError, match="factorised"):
        MultitaskUNet3D(base_width=4, depth=2, factorised=False, temporal_residual=True)


def test_2d_networks_shapes() -> None:
    x = torch.rand(3, 1, 32, 16)
    assert UNet2D(base_width=4, depth=3).eval()(x).shape == (3, 1, 32, 16)
    plane, mask = MultitaskUNet2D(base_width=4, depth=3).eval()(x)
    assert plane.shape == (3, 4) and mask.shape == (3, 1, 32, 16)
    assert PlaneClassifier2D(base_width=4, n_stages=3).eval()(torch.rand(3, 1, 20, 28)).shape == (3, 4)


def test_framewise_models_treat_frames_independently() -> None:
    """2D wrappers: frame t of the output depends on frame t of the input only; planes are the mean over T."""
    model = small("unet2d_multitask")
    x = torch.rand(2, 1, 3, 16, 16)
    with torch.no_grad():
        plane, mask = model(x)
        x2 = x.clone()
        x2[:, :, 1] = torch.rand(2, 1, 16, 16)
        _, mask2 = model(x2)
        per_frame = [model.net(x[:, :, i])[0] for i in range(3)]
    torch.testing.assert_close(mask[:, :, [0, 2]], mask2[:, :, [0, 2]])
    assert not torch.allclose(mask[:, :, 1], mask2[:, :, 1])
    torch.testing.assert_close(plane, torch.stack(per_frame, 1).mean(1))


def test_unet3d_mixes_time() -> None:
    model = small("unet3d")
    _grow_temporal_branches(model)
    x = torch.rand(1, 1, 3, 16, 16)
    with torch.no_grad():
        _, mask = model(x)
        x2 = x.clone()
        x2[:, :, 1] += 0.5
        _, mask2 = model(x2)
    assert not torch.allclose(mask[:, :, 0], mask2[:, :, 0])


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 1, 2, 18, 16), "divisible by 4"),
        ((1, 1, 2, 16, 10), "divisible by 4"),
        ((1, 1, 16, 16), "5-D"),
        ((1, 2, 2, 16, 16), "1 input channel"),
        ((1, 1, 0, 16, 16), "empty"),
    ],
)
def test_invalid_shapes_are_rejected_clearly(arch: str, shape: tuple[int, ...], message: str) -> None:
    model = small(arch)
    with pytest.raises(InputShapeError, match=message):
        model(torch.rand(*shape))


def test_invalid_hparams() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vit")
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        build_model("unet3d", widht=8)
    with pytest.raises(ValueError, match="unknown norm"):
        build_model("unet3d", norm="layer")
    with pytest.raises(ValueError, match="temporal_kernel"):
        build_model("unet3d", temporal_kernel=2)
    with pytest.raises(ValueError, match="depth"):
        build_model("unet2d_multitask", depth=0)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_gradient_reaches_both_heads_and_the_input(arch: str) -> None:
    model = small(arch).train()
    x = torch.rand(2, 1, 2, 16, 16, requires_grad=True)
    plane, mask = model(x)
    (plane.sum() + mask.mean()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    heads = [n for n, _ in model.named_parameters() if "head" in n or "classifier" in n or "unet.mask" in n]
    assert any("mask" in n for n in heads) and any(("plane" in n) or ("classifier" in n) for n in heads)
    for name, p in model.named_parameters():
        if name in heads and name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
