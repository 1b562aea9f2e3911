"""Export a window model to ONNX through the serving head and check it with ONNX Runtime.

Steps of :func:`export_onnx`:

1. wrap the model in :class:`export.head.ServingHead` (eval mode, optional float16);
2. ``torch.onnx.export`` (TorchScript exporter, opset >= 17, constant folding) with a
   dynamic batch axis and the contract's fixed window shape;
3. offline graph optimisation with ONNX Runtime's *basic* level (constant folding,
   redundant-node elimination, Conv+BatchNorm/Add/Mul fusion: standard ONNX ops only, so
   the file stays portable to the TensorRT execution provider); kept only when it does not
   slow inference down;
4. parity against torch on random windows at a batch size other than the traced one
   (max abs difference of plane and mask probabilities; the float mask probabilities are
   read from the graph's Sigmoid node, before uint8 quantisation);
5. the build record ``model.onnx.json`` (checkpoint hash, contract fingerprint, parity,
   optimisation figures) that :mod:`ultramn.serving.build` uses to detect a stale model.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch import nn

from export.head import ServingHead
from export.specs import MIN_OPSET, Encoding, output_specs
from ultramn.contract import CONTRACT, MASK_PROB_SCALE, ModelContract
from ultramn.serving.build import contract_fingerprint, file_sha256, meta_path

#: Parity tolerances on probabilities (float32 graph, float16 graph). An export bug (a wrong
#: op, layout or weight) moves probabilities by 0.1-1 on many voxels; float16 rounding through
#: the network moves a rare voxel by about 1e-2 (the shipped v2 weights: 1.03e-02 on 1 voxel
#: of 614,400 over the seeded parity windows), so its bound is 2e-2 beside the decision check.
TOLERANCE_FP32 = 1e-3
TOLERANCE_FP16 = 2e-2
#: Largest fraction of voxels whose nerve decision (probability >= 0.5) may differ from torch's.
MAX_DECISION_FLIP_FRACTION = 1e-4


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from torch's by more than the tolerance."""


@dataclass
class Parity:
    """ONNX Runtime vs torch on the same random windows."""

    batch: int
    plane_probs_max_abs_diff: float
    mask_probs_max_abs_diff: float
    tolerance: float
    mask_u8_max_level_diff: int | None = None
    mask_u8_fraction_differing: float | None = None
    note: str = ""
    #: fraction of voxels whose nerve decision (probability >= 0.5) differs from torch's
    mask_decisions_fraction_differing: float = 0.0
    max_decision_flip_fraction: float = MAX_DECISION_FLIP_FRACTION

    @property
    def ok(self) -> bool:
        """Both probability differences are within :attr:`tolerance`, and the nerve decisions
        differ on at most :attr:`max_decision_flip_fraction` of the voxels."""
        close = max(self.plane_probs_max_abs_diff, self.mask_probs_max_abs_diff) <= self.tolerance
        return close and self.mask_decisions_fraction_differing <= self.max_decision_flip_fraction

    def describe(self) -> str:
        """One line for the console."""
        text = (
            f"parity vs torch (ONNX Runtime CPU, batch {self.batch}): max|diff| plane_probs "
            f"{self.plane_probs_max_abs_diff:.2e}, mask_probs {self.mask_probs_max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:g}); nerve decisions differ on {100 * self.mask_decisions_fraction_differing:.4f}% "
            f"of voxels (at most {100 * self.max_decision_flip_fraction:g}%) -> {'OK' if self.ok else 'FAILED'}"
        )
        if self.mask_u8_max_level_diff is not None:
            text += (
                f"; uint8 mask: max level diff {self.mask_u8_max_level_diff}, "
                f"{100 * (self.mask_u8_fraction_differing or 0):.4f}% of voxels differ (rounding ties)"
            )
        return text + (f" [{self.note}]" if self.note else "")


@dataclass
class ExportReport:
    """What :func:`export_onnx` did and measured."""

    path: str
    opset: int
    encoding: str
    fp16: bool
    bytes: int
    parity: Parity | None
    optimisation: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def load_model(checkpoint: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`ultramn.model.checkpoint.save_checkpoint`."""
    from ultramn.model.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    return model.eval(), asdict(meta) if is_dataclass(meta) and not isinstance(meta, type) else {"meta": str(meta)}


def random_windows(batch: int, contract: ModelContract = CONTRACT, seed: int = 0) -> np.ndarray:
    """``[batch, 1, T, H, W] float32`` uniform in [0, 1] (the normalised-intensity range)."""
    rng = np.random.default_rng(seed)
    return rng.random((batch, 1, *contract.window_shape), dtype=np.float32)


def session(path: Path | str | bytes, threads: int = 0, level: str = "all") -> ort.InferenceSession:
    """A CPU ONNX Runtime session (``level``: ``basic`` / ``extended`` / ``all``)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"])


def _interleaved_min_latency(sessions: list[ort.InferenceSession], feed: dict[str, np.ndarray], repeats: int = 7) -> list[float]:
    """Best-of-``repeats`` latency of each session, runs interleaved so that load noise hits all alike."""
    for sess in sessions:
        sess.run(None, feed)
    best = [float("inf")] * len(sessions)
    for _ in range(repeats):
        for i, sess in enumerate(sessions):
            start = time.perf_counter()
            sess.run(None, feed)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _expose_sigmoid(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """A copy of the graph that also outputs every Sigmoid node's result (float probabilities)."""
    proto = onnx.load_from_string(model_bytes)
    names = [node.output[0] for node in proto.graph.node if node.op_type == "Sigmoid"]
    for name in names:
        proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return proto.SerializeToString(), names


# --------------------------------------------------------------------------- steps


def torch_export(head: ServingHead, out: Path, encoding: Encoding, opset: int, contract: ModelContract = CONTRACT) -> None:
    """Trace ``head`` to ``out`` with a dynamic batch axis and the contract's window shape."""
    in_name = contract.inputs[0].name
    out_names = [spec.name for spec in output_specs(encoding, contract)]
    dummy = torch.from_numpy(random_windows(2, contract))
    torch.onnx.export(
        head,
        (dummy,),
        str(out),
        opset_version=opset,
        input_names=[in_name],
        output_names=out_names,
        dynamic_axes={name: {0: "batch"} for name in [in_name, *out_names]},
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load(str(out))
    proto.doc_string = f"ultramn {contract.name}: encoding={encoding}, contract={contract_fingerprint(contract)}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))


def optimise(path: Path, contract: ModelContract = CONTRACT) -> dict[str, Any]:
    """Apply ORT's basic offline optimisation in place when it is not slower; the measurements."""
    feed = {contract.inputs[0].name: random_windows(1, contract)}
    before = onnx.load(str(path))
    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        after = onnx.load(str(optimised))
        t0 = time.perf_counter()
        sess_before = session(path)
        load_before = time.perf_counter() - t0
        t0 = time.perf_counter()
        sess_after = session(optimised)
        load_after = time.perf_counter() - t0
        lat_before, lat_after = _interleaved_min_latency([sess_before, sess_after], feed)
        # served with ORT_ENABLE_ALL online, so latency is ~equal; keep the smaller graph unless clearly slower
        kept = lat_after <= lat_before * 1.10
        report = {
            "method": "onnxruntime ORT_ENABLE_BASIC offline (served with ORT_ENABLE_ALL online)",
            "nodes_before": len(before.graph.node),
            "nodes_after": len(after.graph.node),
            "bytes_before": path.stat().st_size,
            "bytes_after": optimised.stat().st_size,
            "session_load_s_before": round(load_before, 4),
            "session_load_s_after": round(load_after, 4),
            "latency_ms_batch1_before": round(lat_before * 1e3, 2),
            "latency_ms_batch1_after": round(lat_after * 1e3, 2),
            "kept": kept,
        }
        if kept:
            after.doc_string = before.doc_string
            onnx.checker.check_model(after)
            onnx.save(after, str(path))
    return report


def check_parity(
    reference: nn.Module, path: Path, encoding: Encoding, tolerance: float, batch: int = 3, contract: ModelContract = CONTRACT
) -> Parity:
    """Compare the ONNX graph at ``path`` (ONNX Runtime CPU) with ``reference`` in torch (float32)."""
    x = random_windows(batch, contract, seed=1)
    with torch.no_grad():
        plane_logits, mask_logits = reference(torch.from_numpy(x))
    ref_plane = torch.softmax(plane_logits.float(), -1).numpy()
    ref_mask = torch.sigmoid(mask_logits.float()).numpy()
    model_bytes, sigmoid_names = _expose_sigmoid(path.read_bytes())
    outs = session(model_bytes).run(None, {contract.inputs[0].name: x})
    plane, mask = outs[0], outs[1]
    if encoding == "logits":
        plane = torch.softmax(torch.from_numpy(plane), -1).numpy()
        mask_f = torch.sigmoid(torch.from_numpy(mask)).numpy()
    elif encoding == "probs_f32":
        mask_f = mask
    else:
        mask_f = outs[2 + sigmoid_names.index(sigmoid_names[-1])] if sigmoid_names else mask / MASK_PROB_SCALE
    mask_f = mask_f.reshape(ref_mask.shape)
    parity = Parity(
        batch=batch,
        plane_probs_max_abs_diff=float(np.abs(plane - ref_plane).max()),
        mask_probs_max_abs_diff=float(np.abs(mask_f - ref_mask).max()),
        tolerance=tolerance,
        mask_decisions_fraction_differing=float(((mask_f >= 0.5) != (ref_mask >= 0.5)).mean()),
    )
    if encoding == "probs_u8":
        ref_u8 = np.round(ref_mask * MASK_PROB_SCALE).astype(np.int16)
        level = np.abs(mask.astype(np.int16) - ref_u8)
        parity.mask_u8_max_level_diff = int(level.max())
        parity.mask_u8_fraction_differing = float((level > 0).mean())
    return parity


def export_onnx(
    model: nn.Module,
    out: Path,
    *,
    fp16: bool = False,
    encoding: Encoding = "probs_u8",
    opset: int = MIN_OPSET,
    optimize: bool = True,
    checkpoint: Path | None = None,
    contract: ModelContract = CONTRACT,
) -> ExportReport:
    """Export ``model`` to ``out`` (see the module docstring); raise :class:`ParityError` on a mismatch."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    model = model.eval()
    reference = copy.deepcopy(model).float()
    head = ServingHead(copy.deepcopy(model), encoding=encoding, half=fp16).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        torch_export(head, tmp_out, encoding, opset, contract)
        optimisation: dict[str, Any] = {"kept": False, "note": "disabled"}
        parity: Parity | None
        try:
            if optimize and fp16:
                optimisation = {"kept": False, "note": "skipped for float16: the CPU provider would insert CPU-only Casts"}
            elif optimize:
                optimisation = optimise(tmp_out, contract)
            parity = check_parity(reference, tmp_out, encoding, TOLERANCE_FP16 if fp16 else TOLERANCE_FP32, contract=contract)
        except Exception as exc:  # onnxruntime CPU lacks some float16 kernels
            if not fp16 or "NOT_IMPLEMENTED" not in str(exc):
                raise
            parity = None
            optimisation = {"kept": False, "note": f"not checkable on the CPU execution provider: {str(exc)[:200]}"}
        if parity is not None and not parity.ok:
            raise ParityError(parity.describe())
        tmp_out.replace(out)
    finally:
        tmp_out.unlink(missing_ok=True)
    report = ExportReport(
        path=str(out), opset=opset, encoding=encoding, fp16=fp16, bytes=out.stat().st_size, parity=parity, optimisation=optimisation
    )
    record = {
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "contract_fingerprint": contract_fingerprint(contract),
        "onnx_sha256": file_sha256(out),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        **asdict(report),
    }
    meta_path(out).write_text(json.dumps(record, indent=2) + "\n")
    return report
