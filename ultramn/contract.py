"""The model's I/O contract: the one source of truth.

Export, the Triton config generator, the gateway and the tests read the names, dtypes and
shapes from here; nothing repeats them by hand.

Shapes and units:
- model input ``frames``: ``[B, 1, T, H, W] float32``, intensities from
  :func:`ultramn.preprocess.normalize_intensity` (uint8 grey levels mapped to [0, 1]).
- model output ``plane_logits``: ``[B, 4] float32``, order :data:`PLANES`.
- model output ``mask_logits``: ``[B, 1, T, H, W] float32`` (pre-sigmoid nerve logits).

What Triton serves (``served_outputs``; the export's serving head computes them in-graph):
- ``plane_probs``: ``[B, 4] float32``, softmax of ``plane_logits``.
- ``mask_probs``: ``[B, 1, T, H, W] uint8``, ``round(sigmoid(mask_logits) * MASK_PROB_SCALE)``;
  divide by :data:`MASK_PROB_SCALE` to get probabilities (4x fewer bytes than float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

#: The four standard imaging planes, in the order of the model's plane head.
PLANES: Final[tuple[str, ...]] = ("TW", "TF", "LW", "LF")
#: Human-readable names of the planes (DOMAIN.md).
PLANE_NAMES: Final[dict[str, str]] = {
    "TW": "transverse, wrist (carpal tunnel inlet)",
    "TF": "transverse, forearm",
    "LW": "longitudinal, wrist",
    "LF": "longitudinal, forearm",
}
#: The probe orientation of each plane. The nerve's cross-sectional area (CSA) is traced in
#: transverse views; in a longitudinal view the mask is a band whose area is not a CSA.
PLANE_VIEWS: Final[dict[str, str]] = {"TW": "transverse", "TF": "transverse", "LW": "longitudinal", "LF": "longitudinal"}
SIDES: Final[tuple[str, ...]] = ("L", "R")
QUALITY_GRADES: Final[tuple[str, ...]] = ("good", "fair", "poor")
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")
#: The project checkout this package runs from (an editable install: ``pip install -e .``).
PROJECT_ROOT: Final[Path] = Path(__file__).resolve().parent.parent
#: The shipped weights: the default of every ``--checkpoint``, wherever the command runs from.
SHIPPED_CHECKPOINT: Final[Path] = PROJECT_ROOT / "models" / "ultramn.pt"
#: The model repository the embedded (CPU) Triton serves: default of ``ultramn triton`` and ``make up``.
CPU_REPOSITORY: Final[Path] = PROJECT_ROOT / "triton_models" / "cpu"
#: The served ``mask_probs`` are ``uint8``: probability = value / MASK_PROB_SCALE.
MASK_PROB_SCALE: Final[int] = 255

TritonDType = Literal["TYPE_FP32", "TYPE_FP16", "TYPE_UINT8"]


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of the model: dims exclude the batch axis."""

    name: str
    dtype: TritonDType
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype name matching :attr:`dtype`."""
        return {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_UINT8": "uint8"}[self.dtype]

    @property
    def triton_datatype(self) -> str:
        """The datatype string the Triton client API uses (``FP32``, ``UINT8``...)."""
        return self.dtype.removeprefix("TYPE_")


@dataclass(frozen=True)
class ModelContract:
    """Window shape and tensor specs of the served model.

    ``window_frames`` (T), ``height`` (H) and ``width`` (W) are the fixed window shape;
    the batch axis is dynamic, up to ``max_batch_size`` on the server.
    """

    name: str = "ultramn"
    window_frames: int = 8
    height: int = 160
    width: int = 160
    max_batch_size: int = 16
    planes: tuple[str, ...] = PLANES
    inputs: tuple[TensorSpec, ...] = field(default=())
    outputs: tuple[TensorSpec, ...] = field(default=())
    served_outputs: tuple[TensorSpec, ...] = field(default=())

    @property
    def window_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of one window."""
        return (self.window_frames, self.height, self.width)

    def input(self, name: str) -> TensorSpec:
        """The input spec called ``name``."""
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        """The output spec called ``name``."""
        return next(t for t in self.outputs if t.name == name)

    def served_output(self, name: str) -> TensorSpec:
        """The served (Triton) output spec called ``name``."""
        return next(t for t in self.served_outputs if t.name == name)


def _default_contract() -> ModelContract:
    t, h, w = 8, 160, 160
    return ModelContract(
        window_frames=t,
        height=h,
        width=w,
        inputs=(TensorSpec("frames", "TYPE_FP32", (1, t, h, w)),),
        outputs=(
            TensorSpec("plane_logits", "TYPE_FP32", (len(PLANES),)),
            TensorSpec("mask_logits", "TYPE_FP32", (1, t, h, w)),
        ),
        served_outputs=(
            TensorSpec("plane_probs", "TYPE_FP32", (len(PLANES),)),
            TensorSpec("mask_probs", "TYPE_UINT8", (1, t, h, w)),
        ),
    )


#: The contract every part of the project uses.
CONTRACT: Final[ModelContract] = _default_contract()
