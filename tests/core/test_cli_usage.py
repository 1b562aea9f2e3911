"""The ``ultramn`` entry point: usage mistakes and bad inputs end in a message and exit code 2, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ultramn.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "samples" / "sample_TW.npz")


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``main()`` with ``args``: its exit code and what it wrote to stderr."""
    monkeypatch.setattr(sys, "argv", ["ultramn", *args])
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuchcommand",), "No such command 'nosuchcommand'"),
        (("evaluate", "--split", "test"), "Missing option '--data'"),
        (("synth", "--participants", "many"), "Invalid value for '--participants'"),
        (("train", "--config"), "'--config' requires an argument"),
        (("analyze", SAMPLE, "--gateway", "localhost:8080"), "--gateway must be an http:// or https:// URL"),
        (("analyze", SAMPLE, "--gateway", "http://localhost:port"), "--gateway: not a URL"),
        (("batch", SAMPLE, "--out", "unused", "--gateway", "ftp://host"), "--gateway must be an http:// or https:// URL"),
    ],
)
def test_usage_errors_exit_2_with_clicks_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_train_on_a_folder_that_is_not_a_dataset_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(ROOT / "configs" / "ultramn.toml")
    code, err = run_main(monkeypatch, capsys, "train", "--config", config, "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2 and err.startswith("error: no manifest at") and "Traceback" not in err


def test_version_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and err == ""
