"""Output encodings of the exported graph, derived from the contract (no torch needed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from ultramn.contract import CONTRACT, ModelContract, TensorSpec

#: ``probs_u8`` is what Triton serves (``CONTRACT.served_outputs``); the other two exist
#: so that the choice can be re-measured (``bench/bench_triton.py --encodings``).
Encoding = Literal["probs_u8", "probs_f32", "logits"]
#: Lowest opset the project exports (LayerNorm, opset-17 Softmax semantics).
MIN_OPSET = 17

ENCODINGS: tuple[Encoding, ...] = ("probs_u8", "probs_f32", "logits")


def output_specs(encoding: Encoding = "probs_u8", contract: ModelContract = CONTRACT) -> tuple[TensorSpec, ...]:
    """The output tensors an exported graph with ``encoding`` emits."""
    if encoding == "probs_u8":
        return contract.served_outputs
    if encoding == "probs_f32":
        return tuple(replace(spec, dtype="TYPE_FP32") for spec in contract.served_outputs)
    if encoding == "logits":
        return contract.outputs
    raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
