"""Checkpoint round trip, contract checks and ONNX export of the product model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ultramn.contract import CONTRACT
from ultramn.model import CheckpointError, CheckpointMeta, MultitaskUNet3D, build_model, load_checkpoint, save_checkpoint
from ultramn.model.checkpoint import FORMAT_VERSION

HP = {"base_width": 4, "depth": 2}


@pytest.mark.parametrize("arch", ["unet3d", "unet2d_pair", "unet2d_multitask"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, **HP)
    model.train()
    model(torch.rand(2, 1, 2, 16, 16))  # move BatchNorm running stats off their defaults
    model.eval()
    extra = {"epoch": 7, "metrics": {"dice": 0.81, "plane_acc": 0.9}, "seed": 1, "note": ("a", "b")}
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", model, arch, HP, extra)
    loaded, meta = load_checkpoint(path)
    assert isinstance(meta, CheckpointMeta)
    assert (meta.arch, meta.hparams, meta.format_version) == (arch, HP, FORMAT_VERSION)
    assert meta.window_shape == CONTRACT.window_shape and meta.planes == CONTRACT.planes
    assert meta.epoch == 7 and meta.metrics == {"dice": 0.81, "plane_acc": 0.9}
    assert meta.extra["note"] == ["a", "b"]
    assert not loaded.training
    x = torch.rand(2, 1, 3, 16, 16)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_file_loads_with_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", MultitaskUNet3D(**HP), "unet3d", HP, {})
    raw = torch.load(path, weights_only=True)
    assert raw["window_shape"] == list(CONTRACT.window_shape)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"planes": ("TW", "TF", "LF", "LW")}, "planes"),
        ({"planes": ("TW", "TF", "LW")}, "planes"),
        ({"window_shape": (CONTRACT.window_frames + 1, CONTRACT.height, CONTRACT.width)}, "window"),
        ({"window_shape": (CONTRACT.window_frames, CONTRACT.height * 2, CONTRACT.width)}, "window"),
    ],
)
def test_load_rejects_contract_mismatch(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = save_checkpoint(tmp_path / "c.pt", MultitaskUNet3D(**HP), "unet3d", HP, {}, **kwargs)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    model, meta = load_checkpoint(path, contract=None)  # explicit opt-out still reads it
    assert isinstance(model, MultitaskUNet3D) and meta.arch == "unet3d"


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read") as junk:
        load_checkpoint(tmp_path / "junk.pt")
    assert "not a PyTorch file" in str(junk.value) and "weights_only" not in str(junk.value)  # no unsafe advice
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="not an UltraMN checkpoint"):
        load_checkpoint(tmp_path / "partial.pt")
    path = save_checkpoint(tmp_path / "c.pt", MultitaskUNet3D(**HP), "unet3d", {"base_width": 8, "depth": 2}, {})
    with pytest.raises(CheckpointError, match="weights do not fit") as misfit:
        load_checkpoint(path)
    # one line for every command that prints it (train --init, export, the gateway): torch's message spans many
    assert "\n" not in str(misfit.value) and "size mismatch" in str(misfit.value)


def test_load_says_what_is_wrong_with_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    """Text gave "cannot read checkpoint x.pt: 101 (KeyError)", a cut file torch's "internal miniz
    error" and a folder "checkpoint not found"."""
    good = save_checkpoint(tmp_path / "c.pt", MultitaskUNet3D(**HP), "unet3d", HP, {})
    (tmp_path / "text.pt").write_text("hello\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in ("text.pt", "empty.pt", "cut.pt"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert f"cannot read checkpoint {tmp_path / name}: not a PyTorch checkpoint file, or a damaged one" in message, message
        assert "KeyError" not in message and "miniz" not in message and "\n" not in message
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file") as folder:
        load_checkpoint(tmp_path)
    assert str(tmp_path / "best.pt") in str(folder.value)


def test_save_rejects_non_json_meta(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "c.pt", MultitaskUNet3D(**HP), "unet3d", HP, {"t": torch.zeros(1)})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_dynamic_batch_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = MultitaskUNet3D(**HP)
    model.train()
    model(torch.rand(2, 1, 4, 32, 32))
    model.eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 1, 4, 32, 32),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["frames"],
        output_names=["plane_logits", "mask_logits"],
        dynamic_axes={"frames": {0: "batch"}, "plane_logits": {0: "batch"}, "mask_logits": {0: "batch"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = torch.rand(b, 1, 4, 32, 32)
        plane, mask = sess.run(None, {"frames": x.numpy()})
        with torch.no_grad():
            tp, tm = model(x)
        assert plane.shape == (b, 4) and mask.shape == (b, 1, 4, 32, 32)
        np.testing.assert_allclose(plane, tp.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(mask, tm.numpy(), atol=1e-4, rtol=0)
