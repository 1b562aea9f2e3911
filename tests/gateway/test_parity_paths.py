"""Path parity without a server: ``ultramn evaluate``'s :func:`predict_clip` and the gateway's
pipeline (also what ``ultramn batch --triton`` runs) give the same masks and planes when the
model answers the same numbers.

The gateway's Triton client is replaced by one that runs the same torch model window by
window, in float32 (the served ``uint8`` masks are a documented, separate difference), and
the ROI stage is off (evaluation has none). Clip lengths cover the edges: a still, T-1, T,
T+1, a clip whose length minus T is not a multiple of the stride, 2T+3; frames are not
square and not the model's size, so both resizes run.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest
import torch

from gateway.pipeline import ClipContext, PipelineConfig, build_pipeline
from gateway.pipeline.postprocess import PostprocessConfig
from gateway.pipeline.roi import RoiConfig
from gateway.pipeline.stitch import StitchConfig
from gateway.pipeline.windows import WindowConfig
from gateway.triton_client import TritonClient, WindowOutput
from tests.serving.fixtures import SMALL_HPARAMS
from ultramn.contract import CONTRACT
from ultramn.data.decoders import DecodedClip
from ultramn.evaluate.predict import predict_clip
from ultramn.model import build_model
from ultramn.windowing import Blend

T = CONTRACT.window_frames


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet3d", **SMALL_HPARAMS).eval()


class TorchClient:
    """What :meth:`TritonClient.infer_window` answers, computed by ``model`` in float32."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    async def infer_window(self, window: npt.NDArray[np.float32]) -> WindowOutput:
        with torch.no_grad():
            plane_logits, mask_logits = self.model(torch.from_numpy(np.ascontiguousarray(window[None])))
        return WindowOutput(
            plane_probs=torch.softmax(plane_logits.float(), dim=1)[0].numpy(),
            mask_probs=torch.sigmoid(mask_logits.float())[0, 0].numpy(),
        )


def _gateway(model: torch.nn.Module, frames: np.ndarray, stride: int, blend: Blend, temporal_filter: int, threshold: float) -> ClipContext:
    config = replace(
        PipelineConfig(),
        postprocess=PostprocessConfig(threshold=threshold),
        roi=RoiConfig(enabled=False),
        windows=WindowConfig(stride=stride),
        stitch=StitchConfig(blend=blend, temporal_filter=temporal_filter),
    )
    pipeline = build_pipeline(config, cast(TritonClient, TorchClient(model)))
    ctx = ClipContext(job_id="parity", clip=DecodedClip(frames, 25.0, 0.1, None, "npy"))
    return asyncio.run(pipeline.run(ctx))


@pytest.mark.parametrize(
    ("n_frames", "stride", "blend", "temporal_filter"),
    [
        (1, 4, "triangular", 5),  # a still: one window of the frame repeated
        (T - 1, 4, "triangular", 5),
        (T, 4, "triangular", 5),
        (T + 1, 4, "uniform", 5),
        (T + 6, 4, "triangular", 5),  # n - T = 6: not a multiple of the stride, last window shifted back
        (2 * T + 3, 3, "triangular", 3),
        (2 * T + 3, T, "uniform", 1),
    ],
)
def test_evaluate_and_gateway_give_the_same_masks_and_planes(
    model: torch.nn.Module, n_frames: int, stride: int, blend: Blend, temporal_filter: int
) -> None:
    frames = np.random.default_rng(n_frames).integers(0, 256, (n_frames, 50, 70), dtype=np.uint8)
    pred = predict_clip(model, frames, stride=stride, blend=blend, temporal_filter=temporal_filter, batch_size=1)
    # the model is untrained (probabilities near 0.4): a threshold at their median splits the frames
    threshold = float(np.sort(pred.mask_probs, axis=None)[pred.mask_probs.size // 2])  # a value some pixels have: >= matters
    ctx = _gateway(model, frames, stride, blend, temporal_filter, threshold)
    assert ctx.masks is not None and ctx.frame_planes is not None and ctx.result is not None
    assert ctx.masks.shape == frames.shape and ctx.result["roi"] == {"x0": 0, "y0": 0, "x1": 70, "y1": 50}
    np.testing.assert_array_equal(ctx.masks, pred.masks(threshold))
    np.testing.assert_allclose(ctx.frame_planes, pred.plane_probs, atol=1e-6)
    assert 0 < int(ctx.masks.sum()) < ctx.masks.size
    assert [f["plane"] for f in ctx.result["frames"]] == [CONTRACT.planes[k] for k in pred.plane_probs.argmax(axis=1)]
