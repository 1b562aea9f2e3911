"""Session fixtures that start the real Triton server (embedded ``tritonserver``, cpu target).

Reuse them from any test folder by importing them into that folder's ``conftest.py``::

    from tests.serving.fixtures import served_model, triton_server  # noqa: F401

The model is ``models/ultramn.pt`` when it exists, else an untrained, small instance of
the real architecture (``build_model("unet3d", base_width=4, depth=2)``) with the
contract's window shape, exported to ONNX in a temporary repository. The server runs on
free ports and is stopped at session end (and dies with the test process otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ultramn.contract import CONTRACT
from ultramn.serving.build import onnx_model_path
from ultramn.serving.embedded import EmbeddedTriton, start_on_free_ports

#: The shipped checkpoint; used instead of the small untrained one when present.
REPO_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "ultramn.pt"
#: The small untrained model's hyper-parameters (real architecture, ~20 ms per window).
SMALL_HPARAMS: dict[str, int] = {"base_width": 4, "depth": 2}


@dataclass(frozen=True)
class ServedModel:
    """A running server and the files it serves."""

    server: EmbeddedTriton
    repository: Path
    onnx_path: Path
    checkpoint: Path


def build_served_repository(root: Path) -> tuple[Path, Path, Path]:
    """Write a cpu repository under ``root`` with an exported model; ``(repository, onnx, checkpoint)``."""
    import torch

    from export.onnx_export import export_onnx, load_model
    from export.repository import RepoSettings, write_repository
    from ultramn.model import build_model, save_checkpoint

    checkpoint = REPO_CHECKPOINT
    if not checkpoint.is_file():
        torch.manual_seed(0)
        checkpoint = save_checkpoint(root / "small.pt", build_model("unet3d", **SMALL_HPARAMS), "unet3d", dict(SMALL_HPARAMS))
    repository = root / "cpu"
    write_repository(repository, RepoSettings(target="cpu"))
    onnx_path = onnx_model_path(repository)
    model, _ = load_model(checkpoint)
    export_onnx(model, onnx_path, checkpoint=checkpoint)
    return repository, onnx_path, checkpoint


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """Start tritonserver on the exported model for the whole session."""
    root = tmp_path_factory.mktemp("triton")
    repository, onnx_path, checkpoint = build_served_repository(root)
    server = start_on_free_ports(repository, [CONTRACT.name], log_path=root / "tritonserver.log")
    try:
        yield ServedModel(server=server, repository=repository, onnx_path=onnx_path, checkpoint=checkpoint)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton_server(served_model: ServedModel) -> EmbeddedTriton:
    """The running server (``.grpc_url``, ``.http_url``)."""
    return served_model.server
