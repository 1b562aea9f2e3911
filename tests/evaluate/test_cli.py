"""``ultramn evaluate`` on bad input: one ``error:`` line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.cli import run_ultramn
from tests.evaluate.test_runner import _dataset
from ultramn.model.checkpoint import MAX_QUOTED_CHARS


def _evaluate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``ultramn evaluate ARGS`` in-process: (exit code, stderr)."""
    return run_ultramn(monkeypatch, capsys, "evaluate", *args)


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


def test_a_cuda_index_without_cuda_is_one_error_line(
    dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old command took ``cuda:0`` on a machine without CUDA (only ``cuda`` was checked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on a GPU machine too
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
        (a_file, f"--out {a_file}: it is a file, not a folder"),
        (a_file / "eval", f"--out {a_file / 'eval'}: {a_file} is a file, not a folder"),
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


def _counting(calls: list[str]):  # type: ignore[no-untyped-def]
    """The fake model of test_runner, counting its calls."""
    from tests.evaluate.test_runner import _predict

    def predictor(frames):  # type: ignore[no-untyped-def]
        calls.append("x")
        return _predict(frames)

    return predictor


def test_a_file_given_as_data_is_named_as_one(
    dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest (instead of its folder) was reported as "--data: no such folder"."""
    manifest = dataset / "manifest.csv"
    code, err = _evaluate(monkeypatch, capsys, "--data", str(manifest), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    assert code == 2 and f"--data: {manifest} is a file, not a folder" in _one_error_line(err), err


def test_a_folder_given_as_checkpoint_is_named_as_one(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training run's folder (instead of its best.pt) was reported as "checkpoint not found"."""
    run = tmp_path / "run"
    run.mkdir()
    code, err = _evaluate(monkeypatch, capsys, "--data", str(dataset), "--checkpoint", str(run), "--out", str(tmp_path / "o"))
    assert code == 2 and "is a folder, not a checkpoint file" in _one_error_line(err) and str(run / "best.pt") in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spacing", [float("nan"), 0.0, -0.2, 25.0])
def test_an_implausible_pixel_spacing_is_refused_before_scoring(spacing: float, tmp_path: Path) -> None:
    """The old runner scored the clips before it, then failed with "pixel spacing must be a pixel
    size in mm ..." naming neither the clip nor the manifest (or, for 0, the first frame of it)."""
    from ultramn.data.manifest import ManifestError
    from ultramn.evaluate.runner import evaluate_dataset

    root = _dataset(
        tmp_path / "data",
        [{"id": "a", "participant": "p0", "shift": 1, "spacing": 0.1}, {"id": "b", "participant": "p1", "shift": 2, "spacing": spacing}],
    )
    calls: list[str] = []
    with pytest.raises(ManifestError) as info:
        evaluate_dataset(root, "test", _counting(calls), tmp_path / "eval", n_boot=100, progress=False)
    message = str(info.value)
    assert str(root / "manifest.csv") in message and "pixel_spacing_mm of 1 clip(s)" in message and "b (must be a pixel size" in message
    assert not calls and not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.parametrize("fps", ["-3", "nan", "0"])
def test_a_frame_rate_that_is_not_positive_is_refused_before_scoring(fps: str, tmp_path: Path) -> None:
    """The measurements refused it only when they reached that clip ("fps must be positive, got
    -3.0", naming neither the clip nor the manifest), after the clips before it were scored."""
    from ultramn.data.manifest import ManifestError
    from ultramn.evaluate.runner import evaluate_dataset

    root = _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "shift": 1}, {"id": "b", "participant": "p1", "shift": 2}])
    manifest = root / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines[:2], lines[2].replace(",20,", f",{fps},")]) + "\n")
    calls: list[str] = []
    with pytest.raises(ManifestError) as info:
        evaluate_dataset(root, "test", _counting(calls), tmp_path / "eval", n_boot=100, progress=False)
    message = str(info.value)
    assert str(manifest) in message and "fps of 1 clip(s) is not a positive number" in message and "b (" in message
    assert not calls and not (tmp_path / "eval" / "metrics.json").exists()


def test_a_missing_clip_file_is_found_before_scoring(tmp_path: Path) -> None:
    """The old runner scored every clip listed before the missing one, then lost that work."""
    from ultramn.data.clipio import ClipFileError
    from ultramn.evaluate.runner import evaluate_dataset

    root = _dataset(tmp_path / "data", [{"id": c, "participant": f"p{i}", "shift": i} for i, c in enumerate("abc")])
    (root / "clips" / "c.npz").unlink()
    calls: list[str] = []
    with pytest.raises(ClipFileError, match=r"1 clip file\(s\) listed in the manifest are unusable: .*c\.npz \(missing\)"):
        evaluate_dataset(root, "test", _counting(calls), tmp_path / "eval" / "run", n_boot=100, progress=False)
    assert not calls
    assert not (tmp_path / "eval").exists()  # --out is made only when results are written
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(ClipFileError):
        evaluate_dataset(root, "test", _counting(calls), tmp_path / "kept", n_boot=100, progress=False)
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"  # a folder that was there stays


def test_a_clip_corrupt_inside_says_where_the_run_stopped(tmp_path: Path) -> None:
    """A clip whose ZIP directory is fine but whose array is damaged can only be found when it is
    read: the message names the clip, its position and that nothing was written."""
    import zipfile

    from ultramn.data.clipio import ClipFileError
    from ultramn.evaluate.runner import evaluate_dataset

    root = _dataset(tmp_path / "data", [{"id": c, "participant": f"p{i}", "shift": i} for i, c in enumerate("abc")])
    with zipfile.ZipFile(root / "clips" / "b.npz", "w") as zf:
        zf.writestr("frames.npy", b"\x93NUMPY damaged")
        zf.writestr("masks.npy", b"\x93NUMPY damaged")
    calls: list[str] = []
    out = tmp_path / "eval"
    with pytest.raises(ClipFileError) as info:
        evaluate_dataset(root, "test", _counting(calls), out, n_boot=100, progress=False)
    message = str(info.value)
    assert message.startswith("evaluation stopped at clip 2 of 3 (b): ") and "b.npz: unreadable clip file" in message
    assert message.endswith(f"; nothing was written to {out}") and len(calls) == 1
    assert not out.exists()  # --out is made only when results are written


SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ultramn.pt"


def test_the_summary_line_gives_the_csa_error_in_px_for_data_without_spacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old summary line always printed ``csa_abs_error_mm2_median=None`` for data without pixel spacings."""
    from ultramn.cli import main

    root = _dataset(tmp_path / "data", [{"id": "a", "participant": "p0", "shift": 1, "n_frames": 1}])
    out = tmp_path / "eval"
    args = ["--data", str(root), "--checkpoint", str(SHIPPED), "--out", str(out), "--n-boot", "100", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["ultramn", "evaluate", *args])
    main()
    summary = capsys.readouterr().out.splitlines()[0]
    m = json.loads((out / "metrics.json").read_text())
    assert m["csa_abs_error_mm2_median"] is None and m["csa_abs_error_px2_median"] is not None
    assert summary.endswith(f"csa_abs_error_px2_median={m['csa_abs_error_px2_median']}") and "mm2" not in summary


def test_n_boot_is_bounded(
    dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old command took ``--n-boot 1000000000``: after scoring every clip, the bootstrap tried to
    hold 10⁹ x participants draws in memory (a MemoryError traceback, or the machine swapping)."""
    args = ["--data", str(dataset), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--n-boot", "1000000000"]
    code, err = _evaluate(monkeypatch, capsys, *args)
    assert code == 2 and "Invalid value for '--n-boot'" in err and "100000" in err


def test_an_empty_split_says_which_splits_the_manifest_has(dataset: Path, tmp_path: Path) -> None:
    """An import puts every clip in one split (or none): the old message only said "no clips in split 'val'"."""
    from ultramn.evaluate.runner import evaluate_dataset

    with pytest.raises(ValueError, match=r"no clips in split 'val' \(the manifest has test: 1; --split all takes every clip"):
        evaluate_dataset(dataset, "val", _counting([]), tmp_path / "o", n_boot=100, progress=False)


def test_weights_that_do_not_fit_are_one_error_line(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old error was torch's load_state_dict message: several lines (``Missing key(s) ...`` on its own line)."""
    ck = torch.load(SHIPPED, weights_only=True)
    ck["state_dict"] = {k: v for i, (k, v) in enumerate(ck["state_dict"].items()) if i % 2}
    damaged = tmp_path / "half.pt"
    torch.save(ck, damaged)
    code, err = _evaluate(
        monkeypatch, capsys, "--data", str(dataset), "--checkpoint", str(damaged), "--out", str(tmp_path / "o"), "--device", "cpu"
    )
    assert code == 2 and "weights do not fit arch 'unet3d'" in _one_error_line(err) and "Missing key(s)" in err
    assert len(_one_error_line(err).strip().split("}: ", 1)[1]) <= MAX_QUOTED_CHARS  # torch's list of missing weights, cut


def test_a_manifest_that_is_not_text_is_named(tmp_path: Path) -> None:
    """The old error was only "'utf-8' codec can't decode byte 0xff in position 0", naming no file."""
    from ultramn.data.manifest import ManifestError
    from ultramn.evaluate.runner import evaluate_dataset

    root = tmp_path / "data"
    root.mkdir()
    (root / "manifest.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ManifestError, match=r"data/manifest\.csv: not a UTF-8 CSV \(invalid start byte at byte 0\)"):
        evaluate_dataset(root, "all", _counting([]), tmp_path / "o", n_boot=100, progress=False)


@pytest.mark.parametrize("gate", ["-0.1", "1.5", "nan"])
def test_a_motion_gate_outside_0_1_is_one_error_line(
    gate: str, dataset: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _evaluate(
        monkeypatch,
        capsys,
        "--data",
        str(dataset),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(tmp_path / "o"),
        "--temporal-min-similarity",
        gate,
    )
    assert code == 2
    assert "--temporal-min-similarity" in _one_error_line(err) and "[0, 1]" in err
    assert not (tmp_path / "o").exists()
