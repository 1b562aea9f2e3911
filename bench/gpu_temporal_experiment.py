"""The planned GPU experiment: does longer training put UltraMN (+ term) ahead of ref-b (+ term)?

One command on the lent GPU machine (``bench/device_kit.sh`` prepares what travels with it;
the plan, its endpoint and the exact command are in ``docs/model-card.md``, "GPU plan"):

1. data: ``ultramn synth`` seed 0 (training set, its val and test splits) and seed 1 (fresh
   participants), unless ``--work`` already holds them;
2. training: every recipe x every seed at once (one process each, sharing the GPU), with
   ``ultramn train --max-minutes`` set from the deadline so the runs stop in time;
3. evaluation: every run's ``best.pt`` on the fresh participants (all clips: the primary
   endpoint), then on the synthetic test split while time is left;
4. ``ultramn compare`` of the recipes (replicate runs pooled), and the temporal-branch scales;
5. packing: at most 8 files under ``--out`` (the device tool returns no more):
   ``summary.json``, ``compare-*.md``, ``results.tar.gz`` (logs, metrics, reports),
   ``checkpoints.tar.gz`` (every ``best.pt``) and ``log.txt``.

Every step is an ``ultramn`` CLI call, so the experiment is the documented pipeline, not a
second one. ``--smoke`` runs the same steps at toy size on CPU to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "UltraMN + term": "configs/ultramn-temporal-term.toml",
    "ref-b + term": "configs/ref-unet2d-multitask-temporal-term.toml",
}
#: Training overrides for a GPU: load data in the main process so the clip cache lasts
#: across epochs (DataLoader workers start afresh every epoch), and hold the whole set.
DEFAULT_SETS = ("data.num_workers=0", "data.cache_mb=4096")


@dataclass
class Run:
    """One training run (recipe x seed) and what became of it."""

    recipe: str
    config: str
    seed: int
    runs_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    evals: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return f"{self.recipe.split()[0].lower()}-seed{self.seed}"

    @property
    def folder(self) -> Path:
        return self.runs_dir / self.slug

    @property
    def log(self) -> Path:
        return self.runs_dir / f"train-{self.slug}.log"


class Clock:
    """Seconds since the start and until the deadline."""

    def __init__(self, deadline_min: float) -> None:
        self.t0 = time.monotonic()
        self.deadline_s = deadline_min * 60

    def used(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.deadline_s - self.used()


def say(msg: str, log: Path) -> None:
    """Print and append to ``log`` with the time since the start."""
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with log.open("a") as fh:
        fh.write(line + "\n")


def ultramn(*args: str) -> list[str]:
    """The command line of ``python -m ultramn ARGS``."""
    return [sys.executable, "-m", "ultramn", *args]


def child_env(threads: int) -> dict[str, str]:
    """Environment of a child process: the repo importable, ``threads`` CPU threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make_data(work: Path, args: argparse.Namespace, log: Path) -> dict[str, Path]:
    """The training set (seed 0) and the fresh participants (seed 1), generated when missing."""
    sets = {"synth": (args.participants, 0), "fresh": (args.fresh_participants, 1)}
    out: dict[str, Path] = {}
    for name, (n, seed) in sets.items():
        root = work / "data" / name
        out[name] = root
        if (root / "manifest.csv").is_file():
            say(f"data {name}: present ({root})", log)
            continue
        cmd = ultramn("synth", "--participants", str(n), "--out", str(root), "--seed", str(seed), "--workers", str(args.workers))
        if args.smoke:
            cmd += ["--frames", "10", "--size", "128", "128"]
        t = time.monotonic()
        with (work / f"synth-{name}.log").open("wb") as fh:
            subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, env=child_env(1))
        say(f"data {name}: {n} participants, seed {seed}, in {time.monotonic() - t:.0f} s", log)
    return out


def train_all(runs: list[Run], data: Path, args: argparse.Namespace, clock: Clock, log: Path) -> None:
    """Start every run at once with the same time budget; wait for all of them."""
    budget_min = max((clock.left() - args.eval_reserve_minutes * 60) / 60, 0.05)
    say(f"training {len(runs)} runs at once, {args.epochs} epochs each, budget {budget_min:.1f} min", log)
    threads = max(1, (os.cpu_count() or 2) // len(runs))
    for run in runs:
        cmd = ultramn(
            "train", "--config", str(REPO / run.config), "--data", str(data), "--out", str(run.folder),
            "--seed", str(run.seed), "--epochs", str(args.epochs), "--patience", str(args.patience),
            "--device", args.device, "--threads", str(threads), "--max-minutes", f"{budget_min:.2f}",
        )  # fmt: skip
        for item in args.set:
            cmd += ["--set", item]
        with run.log.open("wb") as logf:
            run.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env(threads))
    for run in runs:
        assert run.proc is not None
        try:
            run.returncode = run.proc.wait(timeout=max(clock.left() - 60, 1))
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.returncode = run.proc.wait()
        summary = run.folder / "summary.json"
        status = json.loads(summary.read_text()) if summary.is_file() else {"error": f"exit {run.returncode}, see {run.log.name}"}
        if "error" in status and run.log.is_file():  # the traceback's end, so the device's output tail shows it
            status["log_tail"] = run.log.read_text(errors="replace").strip().splitlines()[-5:]
        keys = ("best_epoch", "epochs_run", "stop_reason", "seconds")
        say(
            f"  {run.slug}: " + ", ".join(f"{k} {status.get(k)}" for k in keys) if "error" not in status else f"  {run.slug}: {status}", log
        )


def evaluate_all(runs: list[Run], name: str, data: Path, split: str, args: argparse.Namespace, clock: Clock, log: Path) -> bool:
    """Evaluate every trained run on ``data``/``split`` at once; False when the deadline cut it short."""
    todo = [r for r in runs if (r.folder / "best.pt").is_file()]
    threads = max(1, (os.cpu_count() or 2) // max(len(todo), 1))
    procs = []
    for run in todo:
        out = run.runs_dir / f"eval-{run.slug}-{name}"
        cmd = ultramn(
            "evaluate", "--checkpoint", str(run.folder / "best.pt"), "--data", str(data), "--split", split,
            "--out", str(out), "--device", args.device,
            "--temporal-filter", "1",  # the plan predates the filter default: the networks' own output
        )  # fmt: skip
        if args.smoke:
            cmd += ["--n-boot", "100"]
        with (run.runs_dir / f"eval-{run.slug}-{name}.log").open("wb") as logf:
            procs.append((run, out, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env(threads))))
    complete = True
    for run, out, proc in procs:
        try:
            rc = proc.wait(timeout=max(clock.left() - 20, 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc, complete = proc.wait(), False
        metrics = out / "metrics.json"
        if rc == 0 and metrics.is_file():
            m = json.loads(metrics.read_text())
            run.evals[name] = {"dir": str(out), "dice_mean": m.get("dice_mean"), "n_clips": m.get("n_clips")}
            (out / "frames.csv").unlink(missing_ok=True)  # large; clips.csv holds the per-clip rows
        else:
            complete = False
    say(f"evaluation {name} ({split}): {sum(name in r.evals for r in runs)}/{len(runs)} runs", log)
    return complete


def compare(runs: list[Run], name: str, out_dir: Path, log: Path) -> Path | None:
    """``ultramn compare`` of the recipes on evaluation ``name``, replicate runs pooled per recipe."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        if name in run.evals:
            groups.setdefault(run.recipe, []).append(str(run.evals[name]["dir"]))
    if len(groups) < 2:
        return None
    table = out_dir / f"compare-{name}.md"
    cmd = ultramn("compare", *[f"{recipe}={','.join(dirs)}" for recipe, dirs in groups.items()], "--out", str(table))
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(2))
    say(f"compare {name}: {'ok' if r.returncode == 0 else r.stderr[-500:]}", log)
    return table if r.returncode == 0 else None


def environment(args: argparse.Namespace) -> dict[str, object]:
    """What ran where: Python, torch, numpy, CUDA device, CPUs, label."""
    info: dict[str, object] = {"python": platform.python_version(), "cpus": os.cpu_count(), "label": args.label}
    try:
        import numpy
        import torch

        info |= {"torch": torch.__version__, "numpy": numpy.__version__, "cuda": torch.cuda.is_available()}
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError as exc:
        info["import_error"] = str(exc)
    return info


def pack(runs: list[Run], work: Path, out: Path, summary: dict[str, object]) -> None:
    """Write ``summary.json``, ``results.tar.gz`` and ``checkpoints.tar.gz`` under ``out``."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for path in sorted((work / "runs").rglob("*")):
            if path.is_file() and path.suffix in (".csv", ".json", ".md", ".log", ".png", ".txt"):
                tar.add(path, arcname=str(path.relative_to(work)))
    with tarfile.open(out / "checkpoints.tar.gz", "w:gz") as tar:
        for run in runs:
            best = run.folder / "best.pt"
            if best.is_file():
                tar.add(best, arcname=f"{run.slug}/best.pt")


def temporal_scales(runs: list[Run]) -> None:
    """``python -m ultramn.model.temporal_scales`` of every UltraMN run, into its folder."""
    for run in runs:
        best = run.folder / "best.pt"
        if best.is_file() and "UltraMN" in run.recipe:
            r = subprocess.run(
                [sys.executable, "-m", "ultramn.model.temporal_scales", str(best)], capture_output=True, text=True, env=child_env(2)
            )
            (run.folder / "temporal-scales.md").write_text(r.stdout or r.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu-experiment")), help="results (<= 8 files)")
    p.add_argument("--work", type=Path, default=Path("runs/gpu-work"), help="data, runs and evaluations")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience (the 12-epoch CPU recipe's 4 is too short)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--participants", type=int, default=100)
    p.add_argument("--fresh-participants", type=int, default=30)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="synth worker processes")
    p.add_argument("--device", default="cuda", choices=("auto", "cpu", "cuda"))
    p.add_argument("--deadline-minutes", type=float, default=9.0, help="everything ends by then (the device command's limit is 10)")
    p.add_argument("--eval-reserve-minutes", type=float, default=3.0, help="kept for evaluation after training")
    p.add_argument("--set", action="append", default=None, help=f"training override, repeatable (default {' '.join(DEFAULT_SETS)})")
    p.add_argument("--label", default="", help="recorded in summary.json (e.g. the git commit)")
    p.add_argument("--smoke", action="store_true", help="toy size on CPU: 4 + 2 participants, 10 frames of 128 x 128, 1 epoch, 1 seed")
    args = p.parse_args(argv)
    if args.set is None:
        args.set = list(DEFAULT_SETS)
    if args.smoke:
        args.participants, args.fresh_participants, args.epochs, args.seeds, args.device = 4, 2, 1, [1], "cpu"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Clock(args.deadline_minutes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.work / "runs").mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    env = environment(args)
    say(f"environment: {env}", log)
    data = make_data(args.work, args, log)
    runs = [Run(recipe, config, seed, args.work / "runs") for recipe, config in RECIPES.items() for seed in args.seeds]
    train_all(runs, data["synth"], args, clock, log)
    temporal_scales(runs)
    fresh_complete = evaluate_all(runs, "fresh", data["fresh"], "all", args, clock, log)
    tables = [compare(runs, "fresh", args.out, log)]
    if fresh_complete and clock.left() > 90:  # the secondary evaluation only when time is left
        evaluate_all(runs, "test", data["synth"], "test", args, clock, log)
        tables.append(compare(runs, "test", args.out, log))
    summary: dict[str, object] = {
        "environment": env,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "minutes": round(clock.used() / 60, 2),
        "runs": [
            {
                "recipe": r.recipe,
                "seed": r.seed,
                "returncode": r.returncode,
                "train": json.loads((r.folder / "summary.json").read_text()) if (r.folder / "summary.json").is_file() else None,
                "evals": r.evals,
            }
            for r in runs
        ],
        "tables": [str(t) for t in tables if t],
    }
    pack(runs, args.work, args.out, summary)
    say(f"done in {clock.used() / 60:.1f} min; results in {args.out}", log)
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
