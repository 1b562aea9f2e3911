"""``ultramn evaluate`` on bad input: one ``error:`` line and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tests.evaluate.test_runner import _dataset


def _evaluate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``ultramn evaluate ARGS`` in-process: (exit code, stderr)."""
    from ultramn.cli import main

    monkeypatch.setattr(sys, "argv", ["ultramn", "evaluate", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: "), err
    return err


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "plane": "TW", "shift": 1, "spacing": 0.1}])


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A file where the checkpoint should be (the checks under test come before it is read)."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read")
    return path


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cpu:0", "gpu"])
def test_an_unknown_device_is_one_error_line(
    device: str, dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old command passed --device to torch.device: ``--device tpu`` was a RuntimeError traceback."""
    code, err = _evaluate(
        monkeypatch, capsys, "--data", str(dataset), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--device", device
    )
    assert code == 2
    assert f"--device must be auto, cpu, cuda or cuda:N, not {device!r}" in _one_error_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_index_without_cuda_is_one_error_line(
    dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old command took ``cuda:0`` on a machine without CUDA (only ``cuda`` was checked)."""
    code, err = _evaluate(
        monkeypatch, capsys, "--data", str(dataset), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--device", "cuda:0"
    )
    assert code == 2 and "--device cuda:0: no CUDA device is available" in _one_error_line(err)
