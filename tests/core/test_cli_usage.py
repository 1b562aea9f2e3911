"""The ``ultramn`` entry point: usage mistakes and bad inputs end in a message and exit code 2, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ultramn.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "samples" / "sample_TW.npz")
EVAL = str(ROOT / "docs" / "eval" / "ultramn-k5-synth-test")


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
        (("compare", f"A={EVAL}", f"A={EVAL}"), "the name 'A' is given twice"),
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


def test_a_stride_longer_than_the_window_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(monkeypatch, capsys, "evaluate", "--data", ".", "--stride", "9")
    assert code == 2 and "--stride" in err and "Traceback" not in err


def test_an_output_path_that_cannot_be_written_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("a file where a folder should be")
    code, err = run_main(monkeypatch, capsys, "synth", "--participants", "1", "--out", str(tmp_path / "afile" / "data"))
    assert code == 2 and f"error: --out {tmp_path / 'afile' / 'data'}: {tmp_path / 'afile'} is a file, not a folder" in err
    assert "Traceback" not in err


def test_split_of_a_manifest_with_a_repeated_clip_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ultramn.data.manifest import ClipRecord, write_manifest

    rec = ClipRecord("a", "p1", "L", "TW", "good", 0.1, 25.0, 5, 16, 20, "", "synthetic", "clips/a.npz")
    write_manifest(tmp_path, [rec])
    path = tmp_path / "manifest.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    code, err = run_main(monkeypatch, capsys, "split", str(tmp_path))
    assert code == 2 and "repeats line 2" in err and "Traceback" not in err


def test_version_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and err == ""


def test_ctrl_c_exits_130_with_a_message_not_0(tmp_path: Path) -> None:
    """Click returns (does not raise) the code of an interrupted run outside standalone mode."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "ultramn", "synth", "--participants", "50", "--workers", "1", "--out", str(tmp_path / "s")],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    while "clip/s" not in seen:  # the progress bar has started: the run is under way
        chunk = proc.stderr.read(64)
        assert chunk, seen
        seen += chunk
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130 and "interrupted" in rest
