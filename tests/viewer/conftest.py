"""Fixtures of the web-viewer tests: the REAL gateway served over HTTP and headless Chromium.

The gateway runs in uvicorn (a thread, a free port) on the session's real Triton server
(tests/serving/fixtures.py), with an API key so the page's key handling is exercised. The
browser is Debian's ``chromium`` driven by Playwright (no ``playwright install``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.core.config import Settings
from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.gateway.helpers import make_settings
from tests.serving import fixtures
from tests.serving.fixtures import ServedModel, served_model, triton_server  # noqa: F401

API_KEY = "viewer-test-key"
#: Nerve threshold when the served model is the small UNTRAINED one: its probabilities sit
#: just below 0.45 everywhere, so 0.5 gives empty masks and 0.445 gives partial masks that
#: change from frame to frame; enough for the overlay-vs-mask check to see nerve pixels.
UNTRAINED_THRESHOLD = 0.445
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass(frozen=True)
class LiveGateway:
    """A gateway answering on ``url`` (``http://127.0.0.1:<port>``)."""

    url: str
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def live_gateway(
    served_model: ServedModel,  # noqa: F811 - the imported session fixture
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveGateway]:
    """``create_app`` on the session's Triton, served by uvicorn in a thread."""
    untrained = served_model.checkpoint != fixtures.REPO_CHECKPOINT
    settings = make_settings(
        tmp_path_factory.mktemp("viewer-gateway"),
        served_model.server.grpc_url,
        api_key=API_KEY,
        mask_threshold=UNTRAINED_THRESHOLD if untrained else 0.5,
        model_repository=served_model.repository,  # as make up sets it: results name the weights
    )
    with serve_in_thread(create_app(settings), name="viewer-gateway") as url:
        yield LiveGateway(url, settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's ``/usr/bin/chromium``)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own storage) at a desktop size; JS errors fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 940}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@dataclass(frozen=True)
class ViewerClip:
    """A synthetic clip (frames ``uint8 [N,H,W]``) and its NPZ upload bytes."""

    frames: np.ndarray
    fps: float
    npz: bytes


@pytest.fixture(scope="module")
def viewer_clip() -> ViewerClip:
    """20 frames of 128x160 from the project's generator: a bright-rimmed, dark nerve in tissue."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    clip = generate_clip(ClipSpec(SynthConfig(height=128, width=160, frames=20, seed=5), 0, "TW", "R"))
    frames = np.ascontiguousarray(clip.arrays.frames, dtype=np.uint8)
    fps = 20.0
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames, fps=np.float32(fps))
    return ViewerClip(frames, fps, buf.getvalue())
