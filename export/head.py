"""The serving head: what the exported ONNX graph computes on top of the network.

The network returns ``(plane_logits, mask_logits)`` (``CONTRACT.outputs``). The served
encoding (``CONTRACT.served_outputs``, chosen by measurement, see docs/serving.md) is
``plane_probs float32`` + ``mask_probs uint8`` (probability x ``MASK_PROB_SCALE``, rounded):
a quarter of the bytes of float32 masks on the wire. Two other encodings exist only so
that the choice can be re-measured: ``probs_f32`` and ``logits``.
"""

from __future__ import annotations

import torch
from torch import nn

from export.specs import ENCODINGS, Encoding
from ultramn.contract import MASK_PROB_SCALE


class ServingHead(nn.Module):
    """Wrap a window model so that its outputs are exactly :func:`output_specs` of ``encoding``.

    Input ``[B,1,T,H,W] float32`` (the contract's input, also when ``half``); outputs
    ``plane [B,P]`` and ``mask [B,1,T,H,W]`` in the encoding's dtypes. With ``half`` the
    network runs in float16 and the head casts back to float32 before the softmax/sigmoid.
    """

    def __init__(self, model: nn.Module, encoding: Encoding = "probs_u8", half: bool = False) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
        self.model = model.half() if half else model
        self.encoding = encoding
        self.use_fp16 = half

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames [B,1,T,H,W] float32`` -> ``(plane, mask)`` in the served encoding."""
        x = frames.half() if self.use_fp16 else frames
        plane_logits, mask_logits = self.model(x)
        plane_logits, mask_logits = plane_logits.float(), mask_logits.float()
        if self.encoding == "logits":
            return plane_logits, mask_logits
        plane_probs = torch.softmax(plane_logits, dim=-1)
        mask_probs = torch.sigmoid(mask_logits)
        if self.encoding == "probs_f32":
            return plane_probs, mask_probs
        return plane_probs, torch.round(mask_probs * float(MASK_PROB_SCALE)).to(torch.uint8)
