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


def test_an_unusable_out_is_refused_before_any_clip_is_scored(
    dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old command scored every clip, then failed with ``[Errno 17] File exists`` (a file as
    --out) and wrote report.md, frames.csv and clips.csv among the dataset's files (--out = --data)."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for out, why in (
        (a_file, f"--out {a_file} is a file, not a folder"),
        (a_file / "eval", f"--out {a_file / 'eval'}: cannot write there"),
        (dataset, f"--out {dataset} is the dataset folder"),
        (dataset / ".." / dataset.name, "is the dataset folder"),
    ):
        code, err = _evaluate(monkeypatch, capsys, "--data", str(dataset), "--checkpoint", str(checkpoint), "--out", str(out))
        assert code == 2 and why in _one_error_line(err), err
    assert sorted(p.name for p in dataset.iterdir()) == ["clips", "manifest.csv"]


def test_evaluate_dataset_checks_out_before_predicting(dataset: Path, tmp_path: Path) -> None:
    """The library call refuses an unusable output folder before the predictor runs."""
    from ultramn.evaluate.runner import evaluate_dataset

    calls: list[int] = []

    def predictor(frames):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise AssertionError("not reached")

    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        evaluate_dataset(dataset, "test", predictor, tmp_path / "f", n_boot=100, progress=False)
    with pytest.raises(ValueError, match="is the dataset folder"):
        evaluate_dataset(dataset, "test", predictor, dataset, n_boot=100, progress=False)
    assert not calls
