"""Speed of candidate model configurations on CPU: ONNX Runtime and torch eager side by side.

For every config of the grid (T x H=W x base width x depth) the script builds the model,
counts its multiply-accumulates with forward hooks (Conv, ConvTranspose, Linear;
FLOP = 2 x MAC), exports it to a temporary ONNX file (opset 17, dynamic batch axis) and
times one window batch in ONNX Runtime (CPU provider, ``intra_op_num_threads=--threads``)
and in torch eager (``torch.set_num_threads(--threads)``). Warm-up runs are discarded;
each measurement is the median of its repeats, and the whole grid is measured ``--rounds``
times in turn so that load from other processes spreads over all configs; the table
reports the median over rounds and the best round. Throughput is frames/s = windows/s x T.

Usage::

    .venv/bin/python bench/bench_model.py --threads 2 --T 8 16 --hw 96 128 160 --width 8 12 16 --depth 4
    # two block designs of the product model side by side in one run
    .venv/bin/python bench/bench_model.py --hw 160 --width 8 --variant temporal_residual=true temporal_residual=false

It prints a markdown table (one row per config and batch size) as it goes; ``--out``
also writes it to a file. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import report_path
from ultramn.model import build_model


@dataclass
class Row:
    """One measured config at one batch size; times in seconds per call, one entry per round."""

    arch: str
    t: int
    hw: int
    width: int
    depth: int
    batch: int
    params_m: float
    gflop_per_frame: float
    ort_s: list[float] = field(default_factory=list)
    torch_s: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    variant: str = ""

    def fps(self, seconds: float) -> float:
        """Frames/s of one call taking ``seconds``."""
        return self.batch * self.t / seconds

    def markdown(self) -> str:
        """The row as a markdown table line (medians over rounds; best = fastest round)."""
        ort_med, ort_best = statistics.median(self.ort_s), min(self.ort_s)
        gflops = self.gflop_per_frame * self.fps(ort_med)
        torch_cells = "- | -"
        if self.torch_s:
            tm = statistics.median(self.torch_s)
            torch_cells = f"{tm * 1e3:.0f} | {self.fps(tm):.1f}"
        train_cell = f"{self.fps(statistics.median(self.train_s)):.1f}" if self.train_s else "-"
        arch = f"{self.arch} ({self.variant})" if self.variant else self.arch
        return (
            f"| {arch} | {self.t} | {self.hw} | {self.width} | {self.depth} | {self.batch} | {self.params_m:.2f} "
            f"| {self.gflop_per_frame:.3f} | {ort_med * 1e3:.1f} | **{self.fps(ort_med):.0f}** | {self.fps(ort_best):.0f} "
            f"| {gflops:.0f} | {torch_cells} | {train_cell} |"
        )


HEADER = (
    "| arch | T | H=W | width | depth | batch | params (M) | GFLOP/frame | ORT ms/call | ORT frames/s | ORT best frames/s "
    "| ORT GFLOP/s | torch ms/call | torch frames/s | torch train frames/s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``x`` (Conv, ConvTranspose, Linear only)."""
    total = 0

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.modules.conv._ConvTransposeNd):
            total += inputs[0].numel() * (mod.out_channels // mod.groups) * math.prod(mod.kernel_size)
        elif isinstance(mod, nn.modules.conv._ConvNd):
            total += out.numel() * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def time_calls(fn: Callable[[], object], warmup: int, repeats: int, budget_s: float) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` discarded calls (at least 3 timed, at most ``repeats``)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` to ``path`` (opset 17, dynamic batch axis, names from the contract)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["frames"],
            output_names=["plane_logits", "mask_logits"],
            dynamic_axes={"frames": {0: "batch"}, "plane_logits": {0: "batch"}, "mask_logits": {0: "batch"}},
        )


def ort_session(path: Path, threads: int) -> Any:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads and full graph optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class Prepared:
    """A built model, its ONNX Runtime session and its rows (one per batch size)."""

    model: nn.Module
    session: Any
    rows: list[Row]


def parse_variant(text: str) -> dict[str, Any]:
    """``"k=v,k2=v2"`` -> extra ``build_model`` hparams (values: true/false, int, float or string); ``""`` -> none."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--variant: expected KEY=VALUE, got {item!r}")
        value: Any = {"true": True, "false": False}.get(raw.lower(), raw)
        if isinstance(value, str):
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def prepare(arch: str, t: int, hw: int, width: int, depth: int, batches: list[int], threads: int, tmp: Path, variant: str = "") -> Prepared:
    """Build, count and export one config; the rows are filled by :func:`measure`."""
    torch.manual_seed(0)
    model = build_model(arch, base_width=width, depth=depth, **parse_variant(variant)).eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    x1 = torch.rand(1, 1, t, hw, hw)
    gflop_per_frame = 2 * count_macs(model, x1) / t / 1e9
    onnx_path = tmp / f"{arch}_{t}_{hw}_{width}_{depth}_{abs(hash(variant))}.onnx"
    export_onnx(model, x1, onnx_path)
    rows = [Row(arch, t, hw, width, depth, b, params_m, gflop_per_frame, variant=variant) for b in batches]
    return Prepared(model, ort_session(onnx_path, threads), rows)


def measure(prep: Prepared, args: argparse.Namespace) -> None:
    """One round: time every batch size of ``prep`` in ORT (and torch eager) and append to its rows."""
    for row in prep.rows:
        xb = torch.rand(row.batch, 1, row.t, row.hw, row.hw)
        row.ort_s.append(
            time_calls(functools.partial(prep.session.run, None, {"frames": xb.numpy()}), args.warmup, args.repeats, args.budget)
        )
        if not args.no_torch:
            with torch.inference_mode():
                row.torch_s.append(time_calls(functools.partial(prep.model, xb), 1, args.torch_repeats, args.budget))
        if args.train:
            prep.model.train()
            row.train_s.append(time_calls(functools.partial(train_step, prep.model, xb), 1, args.torch_repeats, args.budget))
            prep.model.eval()


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    """Forward + backward of a stand-in loss (what one training step costs, optimiser aside)."""
    model.zero_grad(set_to_none=True)
    plane, mask = model(x)
    (plane.logsumexp(1).mean() + mask.sigmoid().mean()).backward()


def machine() -> str:
    """CPU model name, visible cores and load average."""
    name = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), name)
    except OSError:
        pass
    load = os.getloadavg()
    return f"{name}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print the markdown table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["unet3d"], help="architectures (build_model names)")
    p.add_argument("--T", nargs="+", type=int, default=[8], help="window lengths")
    p.add_argument("--hw", nargs="+", type=int, default=[96, 128, 160], help="square frame sizes H=W")
    p.add_argument("--width", nargs="+", type=int, default=[8, 12, 16], help="base widths")
    p.add_argument("--depth", nargs="+", type=int, default=[4], help="U-Net depths")
    p.add_argument(
        "--variant",
        nargs="+",
        default=[""],
        help="extra hparams per variant, KEY=VALUE[,KEY=VALUE] (e.g. temporal_residual=false); one grid dimension",
    )
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4], help="window batch sizes")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (ORT and torch)")
    p.add_argument("--warmup", type=int, default=2, help="discarded calls before timing")
    p.add_argument("--repeats", type=int, default=7, help="timed calls (median reported)")
    p.add_argument("--torch-repeats", type=int, default=3, help="timed torch eager calls (after 1 warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="passes over the grid (contention spreads over configs)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds per measurement after 3 calls")
    p.add_argument("--train", action="store_true", help="also time a torch forward+backward (training cost)")
    p.add_argument("--no-torch", action="store_true", help="skip torch eager timings")
    p.add_argument("--out", type=report_path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    lines = [
        f"machine: {machine()}",
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, threads {args.threads}",
        "",
        HEADER,
    ]
    print("\n".join(lines), flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ultramn-bench-") as tmp:
        preps: list[Prepared] = []
        grid = itertools.product(args.arch, args.T, args.hw, args.width, args.depth, args.variant)
        for arch, t, hw, width, depth, variant in grid:
            if hw % 2**depth:
                print(f"<!-- skip H=W={hw}: not divisible by 2**{depth} -->", flush=True)
                continue
            preps.append(prepare(arch, t, hw, width, depth, args.batch, args.threads, Path(tmp), variant))
        for r in range(args.rounds):
            for prep in preps:
                measure(prep, args)
            print(f"<!-- round {r + 1}/{args.rounds} done at {time.perf_counter() - start:.0f} s, {machine()} -->", flush=True)
    for prep in preps:
        lines += [row.markdown() for row in prep.rows]
    print("\n".join(lines[4:]), flush=True)
    lines += ["", f"elapsed {time.perf_counter() - start:.0f} s; end {machine()}"]
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
