"""ONNX export through the serving head: opset, dynamic batch, contract outputs, parity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.head import ServingHead
from export.onnx_export import MIN_OPSET, ParityError, check_parity, export_onnx
from ultramn.contract import CONTRACT, MASK_PROB_SCALE
from ultramn.model import build_model, save_checkpoint
from ultramn.serving.build import built_from, contract_fingerprint, file_sha256, meta_path, staleness

SMALL = {"base_width": 4, "depth": 2}
IN = CONTRACT.inputs[0]


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet3d", **SMALL).eval()


@pytest.fixture(scope="module")
def exported(small_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return out, export_onnx(small_model, out)


def test_graph_signature_follows_the_contract(exported) -> None:
    path, _ = exported
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    (inp,) = proto.graph.input
    assert inp.name == IN.name
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value, "batch axis must be dynamic"
    assert [d.dim_value for d in dims[1:]] == list(IN.dims)
    assert [o.name for o in proto.graph.output] == [s.name for s in CONTRACT.served_outputs]
    want_types = {"TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_UINT8": onnx.TensorProto.UINT8}
    assert [o.type.tensor_type.elem_type for o in proto.graph.output] == [want_types[s.dtype] for s in CONTRACT.served_outputs]


def test_parity_within_tolerance(exported) -> None:
    _, report = exported
    assert report.parity.ok
    assert report.parity.plane_probs_max_abs_diff <= 1e-3 and report.parity.mask_probs_max_abs_diff <= 1e-3
    assert report.parity.mask_u8_max_level_diff <= 1


@pytest.mark.parametrize("batch", [1, 5])
def test_any_batch_size_runs_and_matches_the_head(exported, small_model, batch: int) -> None:
    path, _ = exported
    x = np.random.default_rng(batch).random((batch, *IN.dims), dtype=np.float32)
    plane, mask = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {IN.name: x})
    with torch.no_grad():
        ref_plane, ref_mask = ServingHead(small_model).eval()(torch.from_numpy(x))
    assert plane.shape == (batch, len(CONTRACT.planes)) and mask.shape == (batch, *IN.dims) and mask.dtype == np.uint8
    np.testing.assert_allclose(plane.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(plane, ref_plane.numpy(), atol=1e-4)
    assert np.abs(mask.astype(int) - ref_mask.numpy().astype(int)).max() <= 1
    assert mask.max() <= MASK_PROB_SCALE


def test_parity_check_catches_a_different_model(exported) -> None:
    path, _ = exported
    torch.manual_seed(123)
    other = build_model("unet3d", **SMALL).eval()
    parity = check_parity(other, path, "probs_u8", tolerance=1e-3)
    assert not parity.ok


def test_export_refuses_a_low_opset(small_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(small_model, tmp_path / "m.onnx", opset=13)


def test_parity_error_is_raised(small_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import export.onnx_export as mod

    monkeypatch.setattr(mod, "TOLERANCE_FP32", -1.0)
    with pytest.raises(ParityError, match="FAILED"):
        export_onnx(small_model, tmp_path / "m.onnx", optimize=False)
    assert not (tmp_path / "m.onnx").exists()


def test_fp16_variant_keeps_float32_io(small_model, tmp_path: Path) -> None:
    report = export_onnx(small_model, tmp_path / "m16.onnx", fp16=True)
    proto = onnx.load(str(tmp_path / "m16.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert report.parity is None or report.parity.ok


def test_a_grown_zero_conv_branch_exports_within_parity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("unet3d", **SMALL, temporal_branch="zero_conv").eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if ".body.3." in name:  # the temporal branches' convolutions (weight and bias)
                torch.nn.init.normal_(tensor, std=0.3)
    report = export_onnx(model, tmp_path / "zero_conv.onnx")
    assert report.parity is not None and report.parity.ok
    # the exported graph mixes frames: changing frame 1 changes frame 2's mask probabilities
    session = ort.InferenceSession(str(tmp_path / "zero_conv.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, *IN.dims), dtype=np.float32)
    y = x.copy()
    y[:, :, 1] = np.random.default_rng(1).random(y[:, :, 1].shape, dtype=np.float32)
    mask_x, mask_y = (session.run(None, {IN.name: v})[1] for v in (x, y))
    assert np.abs(mask_x[:, :, 2].astype(int) - mask_y[:, :, 2].astype(int)).max() > 1


def test_cli_export_writes_build_record(small_model, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "c.pt", small_model, "unet3d", dict(SMALL))
    out = tmp_path / "repo" / "model.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "export", "onnx", "--checkpoint", str(ckpt), "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "parity vs torch" in proc.stdout and "OK" in proc.stdout
    record = json.loads(meta_path(out).read_text())
    assert record["checkpoint_sha256"] == file_sha256(ckpt)
    assert record["contract_fingerprint"] == contract_fingerprint()
    assert record["onnx_sha256"] == file_sha256(out)
    assert staleness(out, ckpt) is None
    assert built_from(out) == file_sha256(ckpt)  # the served weights' identity
    out.write_bytes(out.read_bytes()[:-100])  # a damaged (truncated) model file is rebuilt, not served
    assert "not the file that was built" in (staleness(out, ckpt) or "")
    assert built_from(out) is None  # nor named by weights it may not hold
    assert built_from(tmp_path / "nowhere.onnx") is None
    meta_path(out).write_text(json.dumps({**record, "onnx_sha256": file_sha256(out), "checkpoint_sha256": None}))
    assert built_from(out) is None  # exported from a model in memory: no checkpoint to name


def test_parity_fails_when_nerve_decisions_flip_even_with_close_probabilities() -> None:
    from export.onnx_export import Parity

    close = {"batch": 1, "plane_probs_max_abs_diff": 1e-4, "mask_probs_max_abs_diff": 1e-4, "tolerance": 1e-3}
    assert Parity(**close, mask_decisions_fraction_differing=1e-5).ok
    flipped = Parity(**close, mask_decisions_fraction_differing=1e-3)  # probabilities sitting on 0.5, moved across it
    assert not flipped.ok and "FAILED" in flipped.describe() and "0.1000% of voxels" in flipped.describe()


def test_the_shipped_weights_export_to_float16_within_parity(tmp_path: Path) -> None:
    """The FP16 tolerance was 1e-2 and the shipped weights' rounding reached 1.03e-2 on one voxel:
    `python -m export build --fp16` failed. Their decisions agree with torch's on all but a few voxels."""
    from export.onnx_export import load_model
    from ultramn.contract import SHIPPED_CHECKPOINT

    model, _ = load_model(SHIPPED_CHECKPOINT)
    report = export_onnx(model, tmp_path / "m16.onnx", fp16=True)
    assert report.parity is not None and report.parity.ok, report.parity
    assert report.parity.mask_decisions_fraction_differing < 1e-4


def test_cli_errors_are_one_line_with_an_exit_code(
    small_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import export.onnx_export as mod
    from export.__main__ import main

    assert main(["onnx", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and "Traceback" not in err and len(err.splitlines()) == 1
    ckpt = save_checkpoint(tmp_path / "c.pt", small_model, "unet3d", dict(SMALL))
    monkeypatch.setattr(mod, "TOLERANCE_FP32", -1.0)  # an injected parity failure
    assert main(["onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--no-optimize"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the exported graph does not match torch") and "FAILED" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()
