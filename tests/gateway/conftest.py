"""Fixtures of the gateway tests: the REAL Triton server (tests/serving/fixtures.py) and test clips."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.gateway.helpers import make_settings, running_gateway
from tests.serving.fixtures import served_model, triton_server  # noqa: F401
from ultramn.serving.embedded import EmbeddedTriton


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class SynthClip:
    """A synthetic clip with ground truth: frames/masks ``uint8 [N,H,W]``, spacing mm/px, fps."""

    frames: np.ndarray
    masks: np.ndarray
    spacing_mm: float
    fps: float


def synth_clip(n_frames: int = 16, height: int = 128, width: int = 160, seed: int = 3, plane: str = "TW") -> SynthClip:
    """One clip of the project's synthetic generator (``ultramn synth``)."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(height=height, width=width, frames=n_frames, seed=seed), 0, plane, "R"))
    return SynthClip(clip.arrays.frames, clip.arrays.masks, clip.acquisition.pixel_spacing_mm, clip.acquisition.fps)


@pytest.fixture(scope="session")
def clip() -> SynthClip:
    """16 frames of 128x160 (3 windows at the default stride)."""
    return synth_clip()


@pytest.fixture(scope="module")
async def gateway(
    anyio_backend: str,
    triton_server: EmbeddedTriton,  # noqa: F811 - the imported session fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the session's Triton, one per test module (own data folder)."""
    settings = make_settings(tmp_path_factory.mktemp("gateway"), triton_server.grpc_url)
    async with running_gateway(settings) as client:
        yield client


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    return tmp_path / "files"
