"""Training robustness: exact ``--resume``, damaged states, bad settings caught before anything is written."""

import csv
import dataclasses
import io
import logging
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.cli import run_ultramn
from ultramn.cli import main
from ultramn.data.clipio import ClipFileError
from ultramn.data.manifest import read_manifest, write_manifest
from ultramn.data.windows import WindowDataset
from ultramn.model import build_model
from ultramn.model.checkpoint import save_checkpoint
from ultramn.train import loop
from ultramn.train.config import TrainConfig

#: a tiny unet3d with dropout on, so a resumed run repeats an uninterrupted one only with the RNG state restored
HPARAMS = {"base_width": 4, "depth": 2, "dropout": 0.3, "head_dropout": 0.3}


class _CrashError(Exception):
    """Stands for Ctrl-C or a killed process."""


def _config(root: Path, epochs: int = 3, **top: Any) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "seed": 4,
            "epochs": epochs,
            "threads": 2,
            "device": "cpu",
            "model": {"arch": "unet3d", "hparams": HPARAMS},
            "optim": {"lr": 0.003, "warmup_epochs": 0.5},
            "data": {"root": str(root), "batch_size": 4, "num_workers": 0, "windows_per_clip": 1, "max_train_clips": 8, "eval_stride": 8},
            **top,
        }
    )


def _toml(path: Path, root: Path, extra: str = "") -> Path:
    path.write_text(
        f"""
seed = 1
epochs = 1
threads = 2
device = "cpu"
{extra}
[model]
arch = "unet3d"
hparams = {{ base_width = 4, depth = 2 }}
[data]
root = "{root}"
batch_size = 4
num_workers = 0
windows_per_clip = 1
max_train_clips = 4
max_val_clips = 1
"""
    )
    return path


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``ultramn ARGS`` in this process: (exit code, stderr)."""
    return run_ultramn(monkeypatch, capsys, *args)


def _metrics(out: Path) -> list[dict[str, str]]:
    with (out / loop.METRICS_NAME).open(newline="") as fh:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(fh)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    raw = torch.load(path, weights_only=True)
    return raw["model"] if "model" in raw else raw["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _metrics(a) == _metrics(b)
    for name in (loop.STATE_NAME, loop.BEST_NAME):
        wa, wb = _weights(a / name), _weights(b / name)
        assert wa.keys() == wb.keys()
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=f"{name}: {key}")


@pytest.fixture(scope="module")
def full_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs without interruption."""
    out = tmp_path_factory.mktemp("full") / "run"
    loop.train(_config(tiny_dataset), out, show_progress=False)
    return out


def test_resume_after_ctrl_c_repeats_the_uninterrupted_run(
    full_run: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    real_set_epoch = WindowDataset.set_epoch

    def crash_at_epoch_3(self: WindowDataset, epoch: int) -> None:
        if epoch == 2:
            raise _CrashError
        real_set_epoch(self, epoch)

    with monkeypatch.context() as m:
        m.setattr(WindowDataset, "set_epoch", crash_at_epoch_3)
        with pytest.raises(_CrashError):
            loop.train(_config(tiny_dataset), out, show_progress=False)
    assert len(_metrics(out)) == 2
    result = loop.train(_config(tiny_dataset), out, resume=True, show_progress=False)
    assert result.resumed_at_epoch == 3 and result.epochs_run == 3
    _assert_same_run(full_run, out)  # dropout draws continue where they stopped


def test_a_crash_while_saving_the_state_keeps_the_previous_state_and_no_duplicate_epochs(
    full_run: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed half-way through writing epoch 2's last_state.pt (after its metrics.csv row and TensorBoard events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    real_save = torch.save

    def half_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 1:
            buf = io.BytesIO()
            real_save(obj, buf)
            Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise _CrashError
        real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", half_save)
        with pytest.raises(_CrashError):
            loop.train(_config(tiny_dataset), out, show_progress=False)
    assert [row["epoch"] for row in _metrics(out)] == ["1", "2"]
    result = loop.train(_config(tiny_dataset), out, resume=True, show_progress=False)
    assert result.resumed_at_epoch == 2
    assert [row["epoch"] for row in _metrics(out)] == ["1", "2", "3"]  # epoch 2 once, from the resumed session
    _assert_same_run(full_run, out)
    events = EventAccumulator(str(out / loop.TB_NAME))
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("val_dice")] == pytest.approx([float(r["val_dice"]) for r in _metrics(full_run)])


def test_a_run_saved_without_amp_resumes_with_amp(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a CPU run (no AMP: its GradScaler state is {}) continued on a CUDA machine, where amp = true turns the
    # scaler on: GradScaler.load_state_dict refuses an empty state, so --resume exited 2 ("does not fit this run")
    out = tmp_path / "run"
    loop.train(_config(tiny_dataset, epochs=1), out, show_progress=False)
    assert torch.load(out / loop.STATE_NAME, weights_only=True)["scaler"] == {}
    real = torch.amp.GradScaler
    made: list[torch.amp.GradScaler] = []

    def enabled_scaler(device: str = "cuda", enabled: bool = True) -> torch.amp.GradScaler:
        made.append(real("cpu", enabled=True))  # what the CUDA session builds, on this CPU-only machine
        return made[-1]

    monkeypatch.setattr(torch.amp, "GradScaler", enabled_scaler)
    result = loop.train(_config(tiny_dataset, epochs=2), out, resume=True, show_progress=False)
    assert result.epochs_run == 2 and result.resumed_at_epoch == 2 and len(_metrics(out)) == 2
    assert made and made[0].is_enabled()
    assert torch.load(out / loop.STATE_NAME, weights_only=True)["scaler"]["scale"] > 0


def test_a_fresh_run_replaces_an_earlier_run_in_out(full_run: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(full_run, out)
    loop.train(_config(tiny_dataset, epochs=1), out, show_progress=False)
    assert len(_metrics(out)) == 1
    assert len(list((out / loop.TB_NAME).iterdir())) == 1  # one event file, not the old run's too
    assert torch.load(out / loop.STATE_NAME, weights_only=True)["epoch"] == 0


def test_resume_refuses_a_damaged_or_foreign_state_with_exit_2(
    full_run: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    hp = "model.hparams={ base_width = 4, depth = 2, dropout = 0.3, head_dropout = 0.3 }"
    state = full_run / loop.STATE_NAME
    cases = {
        "truncated": lambda p: p.write_bytes(state.read_bytes()[:5000]),
        "text": lambda p: p.write_text("not a state\n"),
        "best.pt": lambda p: shutil.copy(full_run / loop.BEST_NAME, p),
        "other model": lambda p: shutil.copy(state, p),
    }
    for what, damage in cases.items():
        out = tmp_path / what.replace(" ", "_")
        out.mkdir()
        (out / "metrics.csv").write_text("epoch\n1\n")
        damage(out / loop.STATE_NAME)
        args = ("train", "--config", str(cfg), "--out", str(out), "--resume", "--epochs", "4", "--set", hp)
        if what == "other model":
            args = (*args[:-1], "model.hparams={ base_width = 8, depth = 2 }")
        code, err = _cli(monkeypatch, capsys, *args)
        assert code == 2, (what, err[-800:])
        assert "Traceback" not in err and str(out / loop.STATE_NAME) in err, (what, err[-800:])
        assert (out / "metrics.csv").read_text() == "epoch\n1\n" and not (out / "config.json").exists(), what
    out = tmp_path / "best.pt"
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(out), "--resume", "--set", hp)
    assert code == 2 and "not a training state" in err and "best.pt" in err
    out = tmp_path / "other_model"
    code, err = _cli(
        monkeypatch,
        capsys,
        "train",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--resume",
        "--set",
        "model.hparams={ base_width = 8, depth = 2 }",
    )
    assert code == 2 and "do not fit" in err and "'base_width': 8" in err


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("model.hparams={ base_width = 4, depth = 2, bogus = 1 }", "bogus"),
        ("model.hparams={ base_width = 0, depth = 2 }", "base_width"),
        ('model.hparams={ base_width = 4, depth = 2, norm = "foo" }', "unknown norm"),
        ("model.hparams={ base_width = 4, depth = 9 }", "divisible by 512"),
        ("model.hparams={ base_width = 4, depth = 2, n_planes = 3 }", "the contract needs"),
        ("data.augment={ p_flip = 2 }", "p_flip"),
        ("data.augment={ p_mirror = 2 }", "p_mirror"),
        ("optim.lr=inf", "finite"),
        ("optim.grad_clip=nan", "finite"),
        ("loss.pos_weight=inf", "finite"),
        ("data.augment={ gain = [0.5, inf] }", "finite"),
        # numpy's SeedSequence takes no negative seed, torch no seed over 2**64 - 1: tracebacks (exit 1) before
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("seed=18446744073709551616", "seed: Input should be less than or equal to 9223372036854775807"),
        ("seed=true", "seed: Input should be a valid integer"),  # was taken as seed 1
        ("data.num_workers=100000", "num_workers: Input should be less than or equal to 64"),  # would fork that many
        ("threads=100000", "threads: Input should be less than or equal to 1024"),
    ],
)
def test_bad_settings_exit_2_before_anything_is_written(
    setting: str, expected: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an earlier run's config is not overwritten by one that cannot start
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(out), "--set", setting)
    assert code == 2 and expected in err and "Traceback" not in err, err[-1500:]
    assert (out / "config.json").read_text() == "{}" and not (out / loop.METRICS_NAME).exists()


def test_bad_settings_in_the_config_file_exit_2(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    text = cfg.read_text()
    for old, new, expected in (
        ("depth = 2 }", "depth = 2, bogus = 1 }", "bogus"),
        ("windows_per_clip = 1", "windows_per_clip = 1\naugment = { p_flip = 2 }", "p_flip"),
        ("seed = 1", "seed = 1\n[optim]\nlr = inf", "finite"),
    ):
        cfg.write_text(text.replace(old, new))
        code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"))
        assert code == 2 and expected in err and "Traceback" not in err, err[-1500:]
    cfg.write_bytes(text.replace("seed = 1", "# caf\xe9\nseed = 1").encode("latin-1"))
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert code == 2 and "UTF-8" in err and "Traceback" not in err, err[-1500:]
    assert not (tmp_path / "run").exists()


def test_an_out_that_cannot_hold_the_run_exit_2_before_training(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file as --out gave "[Errno 17] File exists", one under a file "[Errno 20] Not a directory" (after the
    data was indexed), and the dataset folder itself was taken: best.pt, tb/ and metrics.csv among the clips."""
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    (tmp_path / "notes.txt").write_text("a file")
    for out, expected in (
        (tmp_path / "notes.txt", "it is a file, not a folder"),
        (tmp_path / "notes.txt" / "run", f"{tmp_path / 'notes.txt'} is a file, not a folder"),
        (tiny_dataset, "is the dataset folder; give the run a folder of its own"),
    ):
        code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(out))
        assert code == 2 and f"--out {out}" in err and expected in err and "Errno" not in err, err[-1500:]
    assert not (tiny_dataset / loop.BEST_NAME).exists() and not (tiny_dataset / "config.json").exists()
    code, err = _cli(
        monkeypatch, capsys, "train", "--config", str(cfg), "--data", str(tiny_dataset / "manifest.csv"), "--out", str(tmp_path / "r")
    )
    assert code == 2 and f"--data: {tiny_dataset / 'manifest.csv'} is a file, not a folder" in err, err[-1500:]


def test_a_folder_given_as_config_is_named_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config configs`` (the folder, not a file in it) said "config file not found"."""
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2 and f"--config {tmp_path} is a folder; give the TOML file" in err and "not found" not in err, err
    assert not (tmp_path / "run").exists()


def test_init_from_the_same_arch_with_other_hparams_exit_2(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "wide.pt"
    save_checkpoint(ckpt, build_model("unet3d", base_width=8, depth=2), "unet3d", {"base_width": 8, "depth": 2})
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--init", str(ckpt), "--out", str(tmp_path / "x"))
    assert code == 2 and "Traceback" not in err, err[-1500:]
    assert "'base_width': 8" in err and "'base_width': 4" in err and str(ckpt) in err


@pytest.fixture(scope="module")
def unlabelled_dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset without plane labels."""
    root = tmp_path_factory.mktemp("unlabelled") / "data"
    shutil.copytree(tiny_dataset, root)
    write_manifest(root, [dataclasses.replace(r, plane="") for r in read_manifest(root)])
    return root


def test_plane_accuracy_monitor_needs_plane_labels(
    unlabelled_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _toml(tmp_path / "c.toml", unlabelled_dataset, extra='monitor = "plane_accuracy"')
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert code == 2 and "plane_accuracy" in err and "plane label" in err, err[-1500:]
    assert not (tmp_path / "run").exists()


def test_a_nan_validation_score_is_no_improvement_but_best_pt_is_written(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_validate = loop.validate
    scores = iter([math.nan, 0.5, math.nan])

    def nan_validate(*args: Any) -> dict[str, float]:
        return {**real_validate(*args), "score": next(scores)}

    monkeypatch.setattr(loop, "validate", nan_validate)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="ultramn.train.loop"):
        loop.train(_config(tiny_dataset, epochs=1), out, show_progress=False)
    assert (out / loop.BEST_NAME).is_file()  # never improved, still a best.pt
    assert "NaN" in caplog.text
    result = loop.train(_config(tiny_dataset, epochs=3), out, resume=True, show_progress=False)
    assert result.best_epoch == 2 and result.best_metrics["score"] == 0.5  # a real score replaces it; a later NaN does not


def test_a_diverging_run_stops_with_exit_2(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_loss = loop.multitask_loss
    calls = iter(range(1000))

    def nan_from_the_second_step(*args: Any) -> Any:
        parts = real_loss(*args)
        return dataclasses.replace(parts, total=parts.total * math.nan) if next(calls) >= 1 else parts

    monkeypatch.setattr(loop, "multitask_loss", nan_from_the_second_step)
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--epochs", "2")
    assert code == 2 and "loss is nan" in err and "epoch 2, batch 1" in err and "Traceback" not in err, err[-1500:]


def test_a_frame_count_unlike_the_manifest_exit_2_before_training(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    records = read_manifest(root)
    victim = next(r for r in records if r.split == "train" and r.n_frames == 10)
    write_manifest(root, [dataclasses.replace(r, n_frames=12) if r is victim else r for r in records])
    with pytest.raises(ClipFileError, match=victim.clip_id):
        WindowDataset(root, split="train")
    cfg = _toml(tmp_path / "c.toml", root)
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--set", "data.max_train_clips=16")
    assert code == 2 and victim.clip_id in err and "has 10 frames, the manifest says 12" in err, err[-1500:]
    assert not (tmp_path / "run").exists()


def test_clip_arrays_that_are_not_uint8_exit_2_before_an_earlier_run_is_replaced(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: the header check read shapes only, so bool masks (np.savez of a hand-made set) passed it, the
    # earlier run in --out was deleted, and the run failed mid-epoch in read_clip (a worker traceback with workers)
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    victim = next(r for r in read_manifest(root) if r.split == "train" and r.n_frames == 10)
    with np.load(root / victim.file) as arrays:
        frames, masks = arrays["frames"], arrays["masks"]
    np.savez(root / victim.file, frames=frames, masks=masks.astype(bool))
    with pytest.raises(ClipFileError, match=f"{victim.clip_id}.*masks bool: both must be uint8"):
        WindowDataset(root, split="train")
    out = tmp_path / "run"
    out.mkdir()
    (out / loop.BEST_NAME).write_bytes(b"an earlier run's weights")
    cfg = _toml(tmp_path / "c.toml", root)
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(out), "--set", "data.max_train_clips=16")
    assert code == 2 and victim.clip_id in err and "both must be uint8" in err and "Traceback" not in err, err[-1500:]
    assert (out / loop.BEST_NAME).read_bytes() == b"an earlier run's weights"
    np.savez(root / victim.file, frames=frames[:, :0], masks=masks[:, :0])
    with pytest.raises(ClipFileError, match=f"{victim.clip_id}.*a side of 0 pixels"):
        WindowDataset(root, split="train")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_clip_that_breaks_mid_run_exits_2_with_its_own_message(
    workers: int, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # damaged stored data behind an intact header passes every check before training and fails when read;
    # before: with data workers the message was the worker's whole traceback ("Caught ClipFileError in DataLoader worker")
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    victim = next(r for r in read_manifest(root) if r.split == "train" and r.n_frames == 10)
    with np.load(root / victim.file) as arrays:
        np.savez(root / victim.file, frames=arrays["frames"], masks=arrays["masks"])  # stored: bytes at known places
    data = bytearray((root / victim.file).read_bytes())
    data[len(data) // 4] ^= 0xFF  # inside frames.npy's pixels: its CRC fails when the clip is read
    (root / victim.file).write_bytes(bytes(data))
    cfg = _toml(tmp_path / "c.toml", root)
    code, err = _cli(
        monkeypatch, capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--set", "data.max_train_clips=16",
        "--set", f"data.num_workers={workers}",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err and "DataLoader worker" not in err, err[-1500:]
    assert err.strip().splitlines()[-1] == f"error: {root / victim.file}: unreadable clip file (Bad CRC-32 for file 'frames.npy')"


def test_help_says_what_out_resume_and_max_minutes_do(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["ultramn", "train", "--help"])
    monkeypatch.setenv("COLUMNS", "400")
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    text = " ".join(capsys.readouterr().out.split())
    assert "a run already there is replaced" in text and "gets the whole budget again" in text


def test_init_from_a_2d_multitask_checkpoint_inflates_it_into_the_3d_model(
    tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ref-b.pt"
    hp = {"base_width": 4, "depth": 2}
    torch.manual_seed(0)
    source = build_model("unet2d_multitask", **hp)
    save_checkpoint(ckpt, source, "unet2d_multitask", hp)
    cfg = _config(tiny_dataset, epochs=1)
    with caplog.at_level(logging.INFO, logger="ultramn.train.loop"):
        result = loop.train(cfg, tmp_path / "run", init=ckpt, show_progress=False)
    assert any("inflating the 2D multitask U-Net" in r.getMessage() for r in caplog.records)
    saved = torch.load(result.best_checkpoint, weights_only=True)
    assert saved["arch"] == "unet3d" and saved["extra"]["init"] == str(ckpt)
    stem_2d = source.state_dict()["net.backbone.stem.body.0.weight"]
    stem_3d = saved["state_dict"]["backbone.stem.body.0.weight"]
    assert stem_3d.shape == (*stem_2d.shape[:2], 1, *stem_2d.shape[2:])
    # one short epoch moves the weights a little: the run started from the 2D weights, not from a fresh draw
    assert torch.corrcoef(torch.stack([stem_3d.flatten(), stem_2d.flatten()]))[0, 1] > 0.9


@pytest.mark.parametrize(
    ("arch", "hparams", "expected"),
    [
        ("unet2d_multitask", {"base_width": 8, "depth": 2}, "cannot start the configured 3D model"),
        ("unet2d_pair", {"base_width": 4, "depth": 2}, "the one cross-architecture start"),
    ],
)
def test_init_from_a_2d_checkpoint_that_cannot_start_the_3d_model_exit_2(
    arch: str,
    hparams: dict[str, Any],
    expected: str,
    tiny_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = tmp_path / "2d.pt"
    save_checkpoint(ckpt, build_model(arch, **hparams), arch, hparams)
    cfg = _toml(tmp_path / "c.toml", tiny_dataset)
    code, err = _cli(monkeypatch, capsys, "train", "--config", str(cfg), "--init", str(ckpt), "--out", str(tmp_path / "x"))
    assert code == 2 and "Traceback" not in err, err[-1500:]
    assert expected in err
    assert not (tmp_path / "x").exists()
