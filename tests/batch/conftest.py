"""Fixtures of the batch tests: the REAL Triton server (tests/serving/fixtures.py) and real archives."""

from __future__ import annotations

import pytest

from tests.batch.archives import ClipSet, make_clip_set
from tests.serving.fixtures import served_model, triton_server  # noqa: F401


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def clip_set(tmp_path_factory: pytest.TempPathFactory) -> ClipSet:
    """A ZIP of 4 small clips (MP4, NPY, DICOM, one corrupt ``.mp4``) and a note that is no clip."""
    return make_clip_set(tmp_path_factory.mktemp("clips"))
