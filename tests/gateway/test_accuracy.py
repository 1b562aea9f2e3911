"""Whole-stack accuracy: a synthetic clip with known masks, analysed through the gateway and the
real Triton server, scores Dice >= 0.85 at the clip's original resolution.

It uses the shipped weights at ``models/ultramn.pt`` (the session's ``served_model``
fixture exports them) and fails loudly (never skips) without them.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.gateway.conftest import synth_clip
from tests.gateway.helpers import upload, write_clip
from tests.gateway.test_roi import X0, Y0, screen_capture
from tests.serving.fixtures import REPO_CHECKPOINT, ServedModel

pytestmark = pytest.mark.anyio

MIN_DICE = 0.85


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice over the whole clip (all frames pooled): ``2|P∩T| / (|P|+|T|)``."""
    p, t = pred > 0, truth > 0
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


async def _masks(client: httpx.AsyncClient, path: Path, spacing: float) -> np.ndarray:
    r = await upload(client, path, wait=True, pixel_spacing_mm=spacing)
    assert r.status_code == 200, r.text
    npz = await client.get(f"/v1/analyses/{r.json()['id']}/masks.npz")
    with np.load(io.BytesIO(npz.content)) as data:
        return np.asarray(data["masks"])


@pytest.mark.parametrize("plane", ["TW", "TF"])
async def test_dice_at_original_resolution(plane: str, served_model: ServedModel, gateway: httpx.AsyncClient, tmp_path: Path) -> None:
    assert REPO_CHECKPOINT.is_file() and served_model.checkpoint == REPO_CHECKPOINT, "needs the trained models/ultramn.pt"
    clip = synth_clip(n_frames=24, height=256, width=256, seed=1234, plane=plane)
    # plain clip, uploaded as MP4 (lossless x264)
    pred = await _masks(gateway, write_clip("mp4", clip.frames, tmp_path / "plain"), clip.spacing_mm)
    assert pred.shape == clip.masks.shape
    assert dice(pred, clip.masks) >= MIN_DICE
    # the same clip inside a screen capture: ROI crop and the mapping back must not cost accuracy
    screen = screen_capture(clip.frames) if clip.frames.shape[1:] == (128, 160) else _embed(clip.frames)
    pred = await _masks(gateway, write_clip("npy", screen, tmp_path / "screen"), clip.spacing_mm)
    h, w = clip.frames.shape[1:]
    truth = np.zeros_like(pred)
    truth[:, Y0 : Y0 + h, X0 : X0 + w] = clip.masks
    assert dice(pred, truth) >= MIN_DICE


def _embed(frames: np.ndarray) -> np.ndarray:
    """Frames of any size in a screen 1.5x larger with text around (like :func:`screen_capture`)."""
    from PIL import Image, ImageDraw

    n, h, w = frames.shape
    screen = Image.new("L", (X0 + w + 60, Y0 + h + 60), 0)
    draw = ImageDraw.Draw(screen)
    draw.text((6, 4), "MEDIAN N.  L12-5  18 MHz  GAIN 54", fill=255)
    draw.text((X0 + 10, Y0 + h + 30), "CSA 9.1 mm2   DEPTH 3.0 cm", fill=255)
    out = np.repeat(np.asarray(screen)[None], n, axis=0).copy()
    out[:, Y0 : Y0 + h, X0 : X0 + w] = frames
    return out
