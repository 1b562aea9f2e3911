"""The temporal-branch inspector: zero at init, grows with the scales, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ultramn.model import build_model, save_checkpoint
from ultramn.model.blocks import TemporalResidual
from ultramn.model.temporal_scales import main, temporal_branch_scales

HP = {"base_width": 4, "depth": 2}


def test_scales_start_at_zero_and_follow_the_norm_weights() -> None:
    model = build_model("unet3d", **HP)
    scales = temporal_branch_scales(model)
    assert len(scales) == 5  # stem + 2 down + 2 decoder blocks
    assert all(s.mean_abs == 0.0 and s.max_abs == 0.0 for s in scales)
    branch = next(m for m in model.modules() if isinstance(m, TemporalResidual))
    with torch.no_grad():
        branch.scale.copy_(torch.tensor([-0.5, 0.1, 0.0, 0.2]))
    first = temporal_branch_scales(model)[0]
    assert first.mean_abs == pytest.approx(0.2) and first.max_abs == pytest.approx(0.5)


def test_zero_conv_gains_are_the_weight_norms_per_output_channel() -> None:
    model = build_model("unet3d", **HP, temporal_branch="zero_conv")
    assert all(s.max_abs == 0.0 for s in temporal_branch_scales(model))
    branch = next(m for m in model.modules() if isinstance(m, TemporalResidual))
    weight = branch.conv.weight  # [C, C, kt, 1, 1] = [4, 4, 3, 1, 1]
    with torch.no_grad():
        weight[0, 1, 0] = 3.0
        weight[0, 2, 2] = -4.0  # channel 0: L2 norm 5
        weight[3, 0, 1] = 1.0  # channel 3: 1
    first = temporal_branch_scales(model)[0]
    assert first.max_abs == pytest.approx(5.0) and first.mean_abs == pytest.approx(1.5)


def test_models_without_branches_have_none() -> None:
    assert temporal_branch_scales(build_model("unet3d", temporal_residual=False, **HP)) == []
    assert temporal_branch_scales(build_model("unet2d_multitask", **HP)) == []


def test_cli_prints_a_table_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = {**HP, "temporal_residual": True}
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, build_model("unet3d", **hp), arch="unet3d", hparams=hp)
    assert main([str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert out.count("| backbone.") == 5 and "| 0.000 | 0.000 |" in out and "scaled_norm" in out
    plain = tmp_path / "plain.pt"
    hp_plain = {**HP, "temporal_residual": False}
    save_checkpoint(plain, build_model("unet3d", **hp_plain), arch="unet3d", hparams=hp_plain)
    assert main([str(plain)]) == 2
    assert "no zero-initialised temporal branches" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pt")]) == 2
    assert main([]) == 2
