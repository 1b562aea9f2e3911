"""Training: the loss falls, the CLI trains, fine-tunes, resumes; evaluation writes its report."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ultramn.contract import PLANE_VIEWS, PLANES, SHIPPED_CHECKPOINT
from ultramn.data.windows import WindowDataset
from ultramn.model import build_model
from ultramn.model.checkpoint import load_checkpoint
from ultramn.train.config import LossSection, TrainConfig, load_config
from ultramn.train.losses import multitask_loss

TINY = {"base_width": 4, "depth": 2}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ultramn", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _write_config(path: Path, root: Path, epochs: int = 1, arch: str = "unet3d") -> Path:
    path.write_text(
        f"""
seed = 1
epochs = {epochs}
threads = 2
[model]
arch = "{arch}"
hparams = {{ base_width = 4, depth = 2 }}
[optim]
lr = 0.003
warmup_epochs = 0.5
[data]
root = "{root}"
batch_size = 4
num_workers = 0
windows_per_clip = 1
"""
    )
    return path


def test_a_few_steps_reduce_the_loss(tiny_dataset: Path) -> None:
    torch.manual_seed(0)
    ds = WindowDataset(tiny_dataset, split="train", mode="train", windows_per_clip=1, seed=0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    model = build_model("unet3d", **TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = LossSection()
    losses = []
    for _ in range(12):
        opt.zero_grad()
        plane_logits, mask_logits = model(batch["frames"])
        parts = multitask_loss(plane_logits, mask_logits, batch["plane"], batch["masks"], batch["valid"], cfg)
        parts.total.backward()
        opt.step()
        losses.append(float(parts.total.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_loss_ignores_unlabelled_planes_and_padded_frames() -> None:
    cfg = LossSection()
    plane_logits = torch.zeros(2, len(PLANES), requires_grad=True)
    mask_logits = torch.zeros(2, 1, 4, 8, 8, requires_grad=True)
    masks = torch.zeros(2, 1, 4, 8, 8)
    valid = torch.tensor([[True, True, False, False], [True, True, True, True]])
    no_labels = multitask_loss(plane_logits, mask_logits, torch.tensor([-1, -1]), masks, valid, cfg)
    assert no_labels.plane == 0.0
    # changing a padded frame's target must not change the loss
    masks2 = masks.clone()
    masks2[0, 0, 3] = 1.0
    a = multitask_loss(plane_logits, mask_logits, torch.tensor([0, 1]), masks, valid, cfg)
    b = multitask_loss(plane_logits, mask_logits, torch.tensor([0, 1]), masks2, valid, cfg)
    assert a.dice == pytest.approx(b.dice) and a.pixel == pytest.approx(b.pixel)
    masks2[0, 0, 1] = 1.0  # a real frame does change it
    c = multitask_loss(plane_logits, mask_logits, torch.tensor([0, 1]), masks, valid, cfg)
    d = multitask_loss(plane_logits, mask_logits, torch.tensor([0, 1]), masks2, valid, cfg)
    assert c.dice != pytest.approx(d.dice)


def test_config_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = 0\n")
    r = _cli("train", "--config", str(bad))
    assert r.returncode == 2 and "invalid training config" in r.stderr
    bad.write_text("[model]\narch = 'resnet'\n")
    assert _cli("train", "--config", str(bad)).returncode == 2
    assert _cli("train", "--config", str(tmp_path / "missing.toml")).returncode == 2
    ok = _write_config(tmp_path / "ok.toml", tmp_path)
    assert isinstance(load_config(ok), TrainConfig)


def test_train_cli_then_finetune_resume_and_evaluate(tiny_dataset: Path, tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "c.toml", tiny_dataset, epochs=2)
    out = tmp_path / "run"
    r = _cli("train", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    best = out / "best.pt"
    assert best.is_file() and (out / "metrics.csv").is_file() and any((out / "tb").iterdir())
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")
    _, meta = load_checkpoint(best)
    assert meta.arch == "unet3d" and meta.extra["epoch"] in (1, 2)

    # resume: one more epoch appended to the same log
    first = json.loads((out / "summary.json").read_text())
    r = _cli("train", "--config", str(cfg), "--out", str(out), "--resume", "--epochs", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 4
    resumed = json.loads((out / "summary.json").read_text())  # counts the whole run, not the last session
    assert first["epochs_run"] == 2 and first["resumed_at_epoch"] is None
    assert resumed["epochs_run"] == 3 and resumed["resumed_at_epoch"] == 3 and resumed["seconds"] > first["seconds"]

    # fine-tune from the checkpoint on the same layout
    ft = tmp_path / "ft"
    r = _cli("train", "--config", str(cfg), "--init", str(best), "--out", str(ft), "--epochs", "1", "--threads", "1", "--seed", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fine-tuning from" in r.stderr
    ft_config = json.loads((ft / "config.json").read_text())
    assert ft_config["threads"] == 1 and ft_config["seed"] == 3
    assert (ft / "best.pt").is_file()

    ev = tmp_path / "eval"
    r = _cli("evaluate", "--checkpoint", str(best), "--data", str(tiny_dataset), "--split", "test", "--out", str(ev), "--n-boot", "100")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in ("plane_accuracy", "dice_mean", "csa_abs_error_mm2_median", "n_clips", "n_frames"):
        assert key in metrics
    assert metrics["n_clips"] == 4 and metrics["n_frames"] == 40
    assert 0.0 <= metrics["dice_mean"] <= 1.0
    for fig in ("confusion.png", "dice_by_quality.png", "overlays.png", "report.md", "frames.csv"):
        assert (ev / fig).is_file(), fig
    assert metrics["blend"] == "triangular" and metrics["stride"] == 4
    stability = metrics["temporal_stability"]
    views = {PLANE_VIEWS[r["plane"]] for r in stability["by_plane"]}
    assert {r["view"] for r in stability["by_view"]} == views and sum(r["n"] for r in stability["by_view"]) == 4
    assert "## Temporal stability" in (ev / "report.md").read_text()
    assert metrics["temporal_filter"] == 5  # the default
    bad = _cli("evaluate", "--checkpoint", str(best), "--data", str(tiny_dataset), "--blend", "gaussian", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--blend must be one of" in bad.stderr
    bad = _cli("evaluate", "--checkpoint", str(best), "--data", str(tiny_dataset), "--temporal-filter", "4", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--temporal-filter" in bad.stderr and "odd" in bad.stderr
    # --temporal-filter reaches the evaluation and is recorded (its effect on masks: tests/evaluate/test_predict.py)
    ev1 = tmp_path / "eval-k1"
    args = ("--data", str(tiny_dataset), "--split", "test", "--n-boot", "100", "--temporal-filter", "1", "--out", str(ev1))
    r = _cli("evaluate", "--checkpoint", str(best), *args)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics1 = json.loads((ev1 / "metrics.json").read_text())
    assert metrics1["temporal_filter"] == 1 and metrics1["n_frames"] == metrics["n_frames"]

    table = tmp_path / "compare.md"
    r = _cli("compare", f"UltraMN={ev}", f"again={ev / 'metrics.json'}", "--out", str(table))
    assert r.returncode == 0, r.stderr[-2000:]
    main, _, paired = table.read_text().partition("Paired differences")
    rows = [ln for ln in main.splitlines() if ln.startswith("| ")]
    assert len(rows) == 3 and rows[1].startswith("| UltraMN |") and f"{metrics['dice_mean']:.4f}" in rows[1]
    assert len({row.count("|") for row in rows}) == 1, rows  # no stray pipe splits a cell: every row has the header's columns
    # the same evaluation twice: paired on all 4 clips, zero difference, no lead claimed
    all_clips, _, by_view = paired.partition("Paired differences on ")
    pair_rows = [ln for ln in all_clips.splitlines() if ln.startswith("| UltraMN − again")]
    # (the tiny test split has one participant: a zero difference, and no interval to claim anything with)
    assert len(pair_rows) == 1 and "+0.0000 [n/a, 1 participant]" in pair_rows[0] and pair_rows[0].endswith("| 4 |")
    assert "n/a (1 participant: no interval)" in pair_rows[0]
    for view in views:  # then once per view present, on that view's clips
        assert f"{view} clips" in by_view
    view_rows = [ln for ln in by_view.splitlines() if ln.startswith("| UltraMN − again")]
    assert len(view_rows) == len(views) and sum(int(ln.rstrip(" |").rsplit("| ", 1)[1]) for ln in view_rows) == 4
    # replicate runs: one row per run, per-clip rows averaged for pairing, a run-to-run table
    # (a copy stands for a second run: one folder given twice is refused, tests/evaluate/test_compare.py)
    replicate = shutil.copytree(ev, tmp_path / "eval-replicate")
    r = _cli("compare", f"A={ev},{replicate}", f"B={ev}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| A run 1 |" in r.stdout and "| A run 2 |" in r.stdout and "averaged over each model's runs" in r.stdout
    spread = r.stdout.partition("Run-to-run spread of A")[2]
    assert "| A run 1 − A run 2 | +0.0000 [n/a, 1 participant] |" in spread
    assert _cli("compare", "no-equals-sign").returncode == 2
    assert _cli("compare", "x=,").returncode == 2
    assert _cli("compare", f"x={tmp_path / 'nowhere'}").returncode == 2


def test_init_with_another_arch_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    from ultramn.model.checkpoint import save_checkpoint

    # the one cross-architecture start is unet2d_multitask -> unet3d (inflation; tests/train/test_resume_and_checks.py)
    save_checkpoint(ckpt, build_model("unet2d_pair", base_width=4, depth=2), "unet2d_pair", {"base_width": 4, "depth": 2}, extra={})
    cfg = _write_config(tmp_path / "c.toml", tiny_dataset)
    r = _cli("train", "--config", str(cfg), "--init", str(ckpt), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unet2d_pair" in r.stderr and "Traceback" not in r.stderr


def test_time_budget_stops_before_an_epoch_that_would_overrun(tiny_dataset: Path, tmp_path: Path) -> None:
    from ultramn.train.loop import out_of_time

    assert not out_of_time(None, 1e9, 1e9)  # no budget
    assert not out_of_time(1.0, 10.0, 0.0)  # no epoch finished yet: always run the first
    assert not out_of_time(1.0, 30.0, 29.0) and out_of_time(1.0, 30.0, 31.0)

    cfg = _write_config(tmp_path / "c.toml", tiny_dataset, epochs=4)
    out = tmp_path / "run"
    r = _cli(
        "train",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--max-minutes",
        "0.01",
        "--patience",
        "2",
        "--set",
        "data.cache_mb=64",
        "--set",
        "optim.lr=0.002",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stopped: time budget" in r.stdout and "(1 epochs in" in r.stdout
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 2  # header + the one epoch
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "time budget" and summary["epochs_run"] == 1 and summary["epochs_planned"] == 4
    assert summary["best_epoch"] == 1 and summary["device"] == "cpu"
    config = json.loads((out / "config.json").read_text())
    assert config["max_minutes"] == 0.01 and config["early_stopping_patience"] == 2
    assert config["data"]["cache_mb"] == 64 and config["optim"]["lr"] == 0.002 and config["data"]["root"] == str(tiny_dataset)


def test_set_overrides_parse_toml_values_and_refuse_unknown_fields(tiny_dataset: Path, tmp_path: Path) -> None:
    from ultramn.errors import UserInputError
    from ultramn.train.config import parse_assignments

    got = parse_assignments(["epochs=40", "data.num_workers=0", "amp=false", "data.root=data/x", "model.hparams={ base_width = 4 }"])
    assert got == {"epochs": 40, "amp": False, "data": {"num_workers": 0, "root": "data/x"}, "model": {"hparams": {"base_width": 4}}}
    for bad in ("epochs", "=3", "a.b.c=1", "data.=1"):
        with pytest.raises(UserInputError):
            parse_assignments([bad])
    cfg = _write_config(tmp_path / "c.toml", tiny_dataset)
    for bad in ("data.no_such_field=1", "epochs=0", "optim.lr=fast"):
        r = _cli("train", "--config", str(cfg), "--out", str(tmp_path / "x"), "--set", bad)
        assert r.returncode == 2 and "invalid override" in r.stderr, (bad, r.stderr[-500:])
        assert not (tmp_path / "x" / "best.pt").exists()


def test_training_batches_do_not_depend_on_the_worker_count(tiny_dataset: Path) -> None:
    """`--set data.num_workers=0` (the GPU plan's setting) draws the same windows in the same order."""
    from ultramn.train.loop import _loader

    ds = WindowDataset(tiny_dataset, split="train", mode="train", windows_per_clip=2, seed=5)
    ds.set_epoch(3)
    cfg = TrainConfig.model_validate({"data": {"root": str(tiny_dataset), "batch_size": 3}})
    seen = []
    for workers in (0, 2):
        batches = list(_loader(ds, cfg.with_overrides(data={"num_workers": workers}), shuffle=True, seed=9))
        seen.append(([c for b in batches for c in b["clip_id"]], torch.cat([b["frames"] for b in batches])))
    assert seen[0][0] == seen[1][0] and len(seen[0][0]) == len(ds)
    assert seen[0][0] != sorted(seen[0][0])  # shuffled
    torch.testing.assert_close(seen[0][1], seen[1][1], atol=1e-6, rtol=0)


def test_runs_of_adjacent_seeds_do_not_share_shuffle_orders() -> None:
    """Seed 1's epoch 0 must not replay seed 0's epoch 1 (as ``seed + epoch`` did): every (seed, epoch)
    of a small grid gives its own order, and the same pair always the same one."""
    from ultramn.train.loop import shuffle_seed

    def order(seed: int, epoch: int) -> tuple[int, ...]:
        return tuple(torch.randperm(100, generator=torch.Generator().manual_seed(shuffle_seed(seed, epoch))).tolist())

    orders = {(s, e): order(s, e) for s in range(4) for e in range(4)}
    assert len(set(orders.values())) == len(orders)
    assert order(2, 3) == orders[(2, 3)]
    assert 0 <= shuffle_seed(2**63 - 1, 10_000) < 2**63  # the largest seed a config allows


def test_evaluate_finds_the_shipped_weights_from_any_working_directory(tiny_dataset: Path, tmp_path: Path) -> None:
    """No ``--checkpoint``, run outside the checkout: the default is the shipped file, not ``./models``."""
    r = _cli("evaluate", "--data", str(tiny_dataset), "--split", "test", "--out", "e", "--n-boot", "100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).samefile(SHIPPED_CHECKPOINT) and metrics["n_clips"] == 4
